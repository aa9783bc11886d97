"""Set-up scripts, Docker files and the Colab notebook: linted and validated with real tools."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    ROOT / "scripts" / "setup.sh",
    ROOT / "scripts" / "test.sh",
    ROOT / ".ci" / "run",
    ROOT / "docker" / "entrypoint.sh",
]
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if path is None:
        pytest.fail(f"{name} is not installed: run `bash scripts/setup.sh --skip-models --dev`")
    return path


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script):
    r = subprocess.run([tool("shellcheck"), "-x", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_setup_rejects_bad_options_and_needs_a_base_dir():
    r = subprocess.run(["bash", "scripts/setup.sh", "--bogus"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr
    r = subprocess.run(["bash", "scripts/setup.sh", "--skip-python"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "--base-dir" in r.stderr


def test_hadolint_dockerfile():
    r = subprocess.run([tool("hadolint"), str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_shape():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    lines = text.splitlines()
    # Users get the CUDA runtime base and the CUDA wheels; the tests pass other values as build args.
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base and base.group(1).startswith("nvidia/cuda:") and "runtime" in base.group(1)
    assert [line for line in lines if line.startswith("FROM")] == ["FROM ${BASE_IMAGE}"]
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu\d+$", text, re.M)
    assert 'pip install torch==2.15.0 torchvision==0.29.2 --index-url "$TORCH_INDEX_URL"' in text
    assert "USER 10001" in text
    # Dependencies are installed before the code is copied, so code edits keep those layers.
    assert text.index("pip install -r /tmp/requirements.txt") < text.index("COPY --chown=10001:10001 backend")
    ignore = (ROOT / "docker" / "Dockerfile.dockerignore").read_text()
    assert "!backend/**" in ignore and ignore.splitlines()[1] == "**"  # no weights sneak in


def compose_config(tmp_path: Path) -> dict:
    """`docker compose config` (v2 plugin) or `docker-compose config` (v1) on a copy of the file
    with an empty .env beside it, as a fresh checkout would have after `cp .env.sample .env`."""
    (tmp_path / "docker").mkdir()
    shutil.copy(ROOT / "docker" / "docker-compose.yml", tmp_path / "docker")
    (tmp_path / ".env").write_text("")
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    cmd = ["docker", "compose", "config"] if v2.returncode == 0 else [tool("docker-compose"), "config"]
    r = subprocess.run(cmd, cwd=tmp_path / "docker", capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return yaml.safe_load(r.stdout)


def test_compose_file_validates(tmp_path):
    config = compose_config(tmp_path)
    studio = config["services"]["studio"]
    assert studio["restart"] == "unless-stopped"
    devices = studio["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    ports = studio["ports"][0]
    assert str(ports.get("published", "")) == "8000" or ports == "8000:8000"
    assert "/api/health" in " ".join(studio["healthcheck"]["test"])
    mounts = {v.split(":")[0] if isinstance(v, str) else v["source"]: v for v in studio["volumes"]}
    assert {"models", "uploads", "outputs"} <= set(mounts)
    assert set(config["volumes"]) >= {"models", "uploads", "outputs"}


def test_notebook_is_valid_and_has_the_four_cells():
    nbformat = pytest.importorskip("nbformat", reason="nbformat is in requirements-dev.txt")
    nb = nbformat.read(str(ROOT / "colab_launch.ipynb"), as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 4
    assert code[0].startswith("# 1. Clone") and "git" in code[0] and "clone" in code[0]
    assert code[1].startswith("# 2. Set-up") and "scripts/setup.sh" in code[1] and "--base-dir" in code[1]
    assert "nvidia-smi" in code[1] and "NO GPU" in code[1] and "STUDIO_GPU_PROFILE" in code[1]
    assert code[2].startswith("# 3. Load .env") and "HF_TOKEN" in code[2] and "NGROK_AUTH_TOKEN" in code[2]
    assert code[3].startswith("# 4. Launch") and "pyngrok" in code[3] and "public_url" in code[3]
    assert "STUDIO_TOKEN" in code[3] and '-m", "backend' in code[3]
    for source in code:  # every cell is valid Python
        compile(source, "<cell>", "exec")
    json.loads((ROOT / "colab_launch.ipynb").read_text())
