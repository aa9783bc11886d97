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

from tests.helpers.server import ROOT

SCRIPTS = [
    ROOT / "scripts" / "setup.sh",
    ROOT / "scripts" / "test.sh",
    ROOT / ".ci" / "run",
    ROOT / "docker" / "entrypoint.sh",
    ROOT / "scripts" / "ray_head.sh",
    ROOT / "scripts" / "ray_worker.sh",
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


def compose_config(tmp_path: Path, *options: str) -> dict:
    """`docker compose config` (v2 plugin) or `docker-compose config` (v1) on a copy of the file
    with an empty .env beside it, as a fresh checkout would have after `cp .env.sample .env`.
    `options` go before `config` (`--profile ray`)."""
    (tmp_path / "docker").mkdir()
    shutil.copy(ROOT / "docker" / "docker-compose.yml", tmp_path / "docker")
    (tmp_path / ".env").write_text("")
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    cmd = [*(["docker", "compose"] if v2.returncode == 0 else [tool("docker-compose")]), *options, "config"]
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


# Ray's own ports: GCS, client server, dashboard, dashboard agent, metrics, node/object managers' defaults.
RAY_PORTS = {6379, 10001, 8265, 52365, 8080, 44217, 8076, 8077}


def published_ports(service: dict) -> list[int]:
    """Host ports a service publishes, from the short ("H:C", "IP:H:C") or the long form."""
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append(int(entry.get("published") or entry["target"]))
        else:
            text = str(entry).rsplit("/", 1)[0]
            parts = text.split(":")
            ports.append(int(parts[-2]) if len(parts) > 1 else int(parts[-1]))
    return ports


def test_compose_ray_profile_is_a_head_and_a_gpu_worker(tmp_path):
    raw = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())["services"]
    # The default `up` is unchanged: only `studio` has no profile; the pool's services are opt-in.
    assert [name for name, service in raw.items() if not service.get("profiles")] == ["studio"]
    assert raw["head"]["profiles"] == ["ray"] and raw["worker"]["profiles"] == ["ray"]

    config = compose_config(tmp_path, "--profile", "ray")["services"]
    studio, head, worker = config["studio"], config["head"], config["worker"]
    assert head["image"] == worker["image"] == studio["image"] == "framepack-studio:latest"

    # The head: the studio as the driver of the Ray it starts, with no GPU of its own.
    env = head["environment"]
    assert env["STUDIO_CLUSTER"] == "ray" and env["STUDIO_RAY_ADDRESS"] == "auto"
    assert str(env["RAY_USAGE_STATS_ENABLED"]) == "0"
    assert head["command"][:2] == ["bash", "scripts/ray_head.sh"] and head["command"][2:] == studio.get(
        "command", ["python", "-m", "backend"]
    )
    assert "deploy" not in head  # no GPU reservation
    assert published_ports(head) == published_ports(studio) == [8000]
    assert head["healthcheck"]["test"] == studio["healthcheck"]["test"]
    mounts = {v["source"] if isinstance(v, dict) else v.split(":")[0] for v in head["volumes"]}
    assert mounts == {"models", "loras", "uploads", "outputs", "state"}  # the studio's own: switching keeps jobs

    # The worker: joins the head and holds this host's GPUs, with its own model folder mounted.
    assert worker["command"] == ["bash", "scripts/ray_worker.sh"]
    assert worker["environment"]["STUDIO_RAY_HEAD"] == "head:6379"
    assert str(worker["environment"]["RAY_USAGE_STATS_ENABLED"]) == "0"
    assert worker["environment"]["STUDIO_MODELS_DIR"] == "/models"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    worker_mounts = {v["source"] if isinstance(v, dict) else v.split(":")[0] for v in worker["volumes"]}
    assert worker_mounts == {"models", "loras"}  # a take's LoRAs are read where it runs
    assert worker["environment"]["STUDIO_LORA_DIR"] == "/loras"
    assert "ports" not in worker
    depends = worker["depends_on"]
    assert "head" in (depends if isinstance(depends, list) else list(depends))
    for service in (head, worker):
        assert service["shm_size"]  # Ray's object store needs more than Docker's 64 MB
        assert service["restart"] == "unless-stopped"

    # Ray's ports have no authentication: no service publishes any of them (or anything but the web port).
    for name, service in config.items():
        assert not set(published_ports(service)) & RAY_PORTS, name
        assert set(published_ports(service)) <= {8000}, name


def test_ray_scripts_start_ray_without_usage_stats_and_go_into_the_image():
    head = (ROOT / "scripts" / "ray_head.sh").read_text()
    worker = (ROOT / "scripts" / "ray_worker.sh").read_text()
    assert "--head" in head and '--port="$PORT"' in head and "--num-gpus=0" in head and 'exec "$@"' in head
    assert "ray_wait_gpus.py" in head
    assert '--address="$HEAD"' in worker and "--block" in worker and "exec ray start" in worker
    for text in (head, worker):
        assert "--disable-usage-stats" in text and "export RAY_USAGE_STATS_ENABLED=0" in text
        assert "--dashboard-host" not in text  # the dashboard stays on the container's loopback
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "COPY --chown=10001:10001 scripts ./scripts" in dockerfile
    assert "!scripts/**" in (ROOT / "docker" / "Dockerfile.dockerignore").read_text()


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
