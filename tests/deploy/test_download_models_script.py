"""scripts/download_models.py against servers on loopback.

The hub cannot be reached here, so a small HTTP server on 127.0.0.1 answers the few hub routes
huggingface_hub uses (repo info, tree listing, resolve with Range); the real huggingface_hub
client does the downloading. The repos it serves are a tiny FramePack pipeline of the real
architecture, split the way the three real repos are split; the assembled folder must load
through diffusers. A second server serves the post-processing weight files, and can cut a
connection half-way to exercise resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers.server import ROOT

SCRIPT = ROOT / "scripts" / "download_models.py"

TRANSFORMER_REPO = "test/FramePackI2V_HY"
BASE_REPO = "test/HunyuanVideo"
REDUX_REPO = "test/flux_redux_bfl"
LFS_SUFFIXES = (".safetensors", ".bin", ".pth")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.sha = hashlib.sha1(json.dumps(sorted((k, git_sha1(v)) for k, v in files.items())).encode()).hexdigest()

    def tree(self) -> list[dict]:
        out = []
        for path, data in sorted(self.files.items()):
            entry = {"type": "file", "path": path, "size": len(data), "oid": git_sha1(data)}
            if path.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            out.append(entry)
        return out

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if path.endswith(LFS_SUFFIXES) else git_sha1(data)


class FileServer:
    """A loopback server for a hub and for plain files, counting the file bodies it sends."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.plain: dict[str, bytes] = {}
        self.corrupt: set[str] = set()  # paths served with one byte flipped
        self.cut_once: set[str] = set()  # paths whose first full GET breaks half-way
        self.bodies: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.handle_any(head=True)

            def do_GET(self):
                self.handle_any(head=False)

            def send_json(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def handle_any(self, head: bool):
                path = self.path.split("?", 1)[0]
                if path.startswith("/api/models/"):
                    return self.api(path[len("/api/models/") :])
                for name, repo in outer.repos.items():
                    prefix = f"/{name}/resolve/"
                    if path.startswith(prefix):
                        _, _, file = path[len(prefix) :].partition("/")
                        if file not in repo.files:
                            return self.send_error(404)
                        return self.send_file(
                            file, repo.files[file], head, {"X-Repo-Commit": repo.sha, "ETag": f'"{repo.etag(file)}"'}
                        )
                name = path.lstrip("/")
                if name in outer.plain:
                    return self.send_file(name, outer.plain[name], head, {})
                self.send_error(404)

            def api(self, rest: str):
                for name, repo in outer.repos.items():
                    if rest == name or rest.startswith(name + "/revision/"):
                        return self.send_json(
                            {"id": name, "sha": repo.sha, "siblings": [{"rfilename": p} for p in repo.files]}
                        )
                    if rest.startswith(name + "/tree/"):
                        return self.send_json(repo.tree())
                self.send_error(404)

            def send_file(self, key: str, data: bytes, head: bool, extra: dict):
                if key in outer.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                body = data[start:]
                self.send_response(206 if start else 200)
                for k, v in extra.items():
                    self.send_header(k, v)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if head:
                    return
                outer.bodies.append(key)
                if key in outer.cut_once and not start:
                    outer.cut_once.discard(key)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def tiny_repos(tmp_path_factory) -> dict[str, Repo]:
    """The tiny pipeline split like the real repos: the transformer at a repo's root, the base
    repo with HunyuanVideo's own transformer (which must not be fetched), the image encoder in a
    Flux Redux repo."""
    from tests.helpers.tiny_framepack import save_tiny_pipeline

    tiny = save_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipe")

    def read(folder: str) -> dict[str, bytes]:
        return {f"{folder}/{p.name}": p.read_bytes() for p in (tiny / folder).iterdir() if p.is_file()}

    transformer = {p.name: p.read_bytes() for p in (tiny / "transformer").iterdir()}
    transformer["README.md"] = b"# not needed\n"
    index = json.loads((tiny / "model_index.json").read_text())
    base_index = {k: v for k, v in index.items() if k not in ("image_encoder", "feature_extractor")}
    base_index["_class_name"] = "HunyuanVideoPipeline"
    base_index["transformer"] = ["diffusers", "HunyuanVideoTransformer3DModel"]
    base: dict[str, bytes] = {"model_index.json": json.dumps(base_index).encode()}
    for folder in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler"):
        base.update(read(folder))
    base["transformer/diffusion_pytorch_model.safetensors"] = b"x" * 4096  # must stay on the server
    base["text_encoder/pytorch_model.bin"] = b"a .bin twin of the safetensors"  # must not be fetched
    redux = {
        "model_index.json": json.dumps(
            {
                "_class_name": "FluxPriorReduxPipeline",
                "image_encoder": index["image_encoder"],
                "feature_extractor": index["feature_extractor"],
            }
        ).encode()
    }
    redux.update(read("image_encoder"))
    redux.update(read("feature_extractor"))
    return {TRANSFORMER_REPO: Repo(transformer), BASE_REPO: Repo(base), REDUX_REPO: Repo(redux), "_dir": tiny}


@pytest.fixture
def server(tiny_repos):
    srv = FileServer()
    srv.repos = {k: v for k, v in tiny_repos.items() if not k.startswith("_")}
    yield srv
    srv.close()


def run_script(tmp_path: Path, server: FileServer, *args: str, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "STUDIO_", "FRAMEPACK_"))}
    env.update(
        {
            "HF_ENDPOINT": server.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
            "FRAMEPACK_TRANSFORMER": TRANSFORMER_REPO,
            "FRAMEPACK_BASE": BASE_REPO,
            "FRAMEPACK_IMAGE_ENCODER": REDUX_REPO,
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
            **env_extra,
        }
    )
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--base-dir",
            str(tmp_path / "models"),
            "--env-file",
            str(tmp_path / ".env"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )


def test_framepack_is_assembled_from_the_hub_without_copies_and_loads(tmp_path, server, tiny_repos):
    (tmp_path / ".env").write_text("# mine\nSTUDIO_PORT=9000\nFRAMEPACK_DIR=old\n")
    r = run_script(tmp_path, server, "--only", "framepack")
    assert r.returncode == 0, r.stdout + r.stderr
    models = tmp_path / "models"
    target = models / "framepack"
    # Only the pipeline's components were fetched: not HunyuanVideo's transformer, not .bin twins.
    assert "transformer/diffusion_pytorch_model.safetensors" not in server.bodies
    assert "text_encoder/pytorch_model.bin" not in server.bodies
    assert "README.md" not in server.bodies
    # Every weight in the assembled folder is a link into the cache, not a copy.
    weights = list(target.rglob("*.safetensors"))
    assert weights and all(p.is_symlink() for p in weights)
    assert all(models / "hf-cache" in p.resolve().parents for p in weights)
    index = json.loads((target / "model_index.json").read_text())
    assert index["_class_name"] == "HunyuanVideoFramepackPipeline"
    assert index["transformer"] == ["diffusers", "HunyuanVideoFramepackTransformer3DModel"]
    # .env: our keys replaced or added, the user's lines kept.
    env_text = (tmp_path / ".env").read_text()
    assert "# mine" in env_text and "STUDIO_PORT=9000" in env_text
    assert f"FRAMEPACK_DIR={target}" in env_text and "FRAMEPACK_DIR=old" not in env_text

    import torch
    from diffusers import HunyuanVideoFramepackPipeline

    loaded = HunyuanVideoFramepackPipeline.from_pretrained(str(target))
    original = HunyuanVideoFramepackPipeline.from_pretrained(str(tiny_repos["_dir"]))
    for a, b in zip(loaded.transformer.state_dict().values(), original.transformer.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(
        next(iter(loaded.image_encoder.state_dict().values())), next(iter(original.image_encoder.state_dict().values()))
    )

    # Second run: no file body is fetched and the manifest short-cut reports completion.
    server.bodies.clear()
    r = run_script(tmp_path, server, "--only", "framepack")
    assert r.returncode == 0, r.stderr
    assert server.bodies == [] and "already complete" in r.stdout


def test_hub_resume_and_checksum_mismatch(tmp_path, server):
    weight = "diffusion_pytorch_model.safetensors"
    server.cut_once.add(weight)
    server.corrupt.add("vae/diffusion_pytorch_model.safetensors")
    r = run_script(tmp_path, server, "--only", "framepack")
    assert r.returncode == 1
    assert "vae/diffusion_pytorch_model.safetensors" in r.stderr and "run set-up again" in r.stderr
    cache = tmp_path / "models" / "hf-cache"
    # The damaged file left nothing behind: no blob with that content, no half file.
    assert not list(cache.rglob("*.incomplete"))
    assert not (tmp_path / "models" / "framepack" / "vae" / "diffusion_pytorch_model.safetensors").exists()
    # The cut-off transformer download was resumed and verified.
    assert server.bodies.count(weight) >= 2
    server.corrupt.clear()
    server.bodies.clear()
    r = run_script(tmp_path, server, "--only", "framepack")
    assert r.returncode == 0, r.stderr
    assert weight not in server.bodies  # kept from the first run
    assert "vae/diffusion_pytorch_model.safetensors" in server.bodies


def test_hub_failure_names_the_model_and_the_fix(tmp_path, server):
    r = run_script(tmp_path, server, "--only", "framepack", FRAMEPACK_BASE="test/does-not-exist")
    assert r.returncode == 1
    assert "test/does-not-exist" in r.stderr and "->" in r.stderr
    assert "FRAMEPACK_DIR" not in (tmp_path / ".env").read_text()


def test_post_weights_resume_verify_and_second_run(tmp_path, server):
    from backend.utils.model_registry import WEIGHTS

    payloads = {}
    for name, spec in WEIGHTS.items():
        if spec.url:
            file = spec.url.rsplit("/", 1)[-1]
            payloads[name] = file
            server.plain[file] = hashlib.sha256(name.encode()).digest() * 2048  # 64 KiB each
            if name.startswith("rife-"):
                # RIFE files are checked by loading them: a random-init network of the real
                # architecture, saved the way the published checkpoints are.
                import io

                import torch

                from backend.pipeline.rife_ifnet import IFNet
                from tests.helpers.postprocess import rife_checkpoint_state

                torch.manual_seed(0)
                buf = io.BytesIO()
                torch.save(rife_checkpoint_state(IFNet()), buf)
                server.plain[file] = buf.getvalue()
    resumed = payloads["codeformer"]
    server.cut_once.add(resumed)
    r = run_script(tmp_path, server, "--only", "post", "--weights-mirror", server.url)
    models = tmp_path / "models"
    # Real-ESRGAN x4plus has a published sha256 our test bytes cannot match: refused, nothing left.
    assert r.returncode == 1
    assert "realesrgan-x4plus" in r.stderr and "RealESRGAN_x4plus.pth" in r.stderr
    assert not list((models / "realesrgan").glob("RealESRGAN_x4plus.pth*"))
    # The cut connection was resumed into a complete file.
    assert (models / "codeformer" / resumed).read_bytes() == server.plain[resumed]
    assert server.bodies.count(resumed) == 2
    # RIFE comes from vs-rife's release files (here the mirror), verified by loading it, and its
    # checksum is recorded at that first verified download.
    import json

    rife = models / "rife" / "rife-4.25" / "flownet.pkl"
    assert rife.read_bytes() == server.plain["flownet_v4.25.pkl"]
    record = json.loads((models / "rife" / ".studio-checksums.json").read_text())
    assert record["rife-4.25/flownet.pkl"]["sha256"] == hashlib.sha256(rife.read_bytes()).hexdigest()
    assert "[manual]" not in r.stdout
    env_text = (tmp_path / ".env").read_text()
    assert f"CODEFORMER_DIR={models / 'codeformer'}" in env_text
    # Second run: only the still-missing file is requested again.
    server.bodies.clear()
    r = run_script(tmp_path, server, "--only", "post", "--weights-mirror", server.url)
    assert set(server.bodies) == {payloads["realesrgan-x4plus"]}


def test_disk_space_check_says_what_is_needed_and_free(tmp_path):
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("download_models", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["download_models"] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    free = shutil.disk_usage(tmp_path).free
    mod.check_space(tmp_path, 1024)  # fits
    with pytest.raises(mod.NotEnoughSpace) as info:
        mod.check_space(tmp_path, free * 2)
    assert "Not enough space" in str(info.value) and "free" in str(info.value)


def test_wan22_is_assembled_from_the_hub_with_both_loras_and_loads(tmp_path, server):
    """`--only wan22`: Wan 2.2 I2V A14B's repo (a tiny one of its layout: two experts, no image
    encoder) and its two LightX2V LoRAs through the same registry path, checked against the hub's
    hashes; the studio's loader then finds it complete with the fast mode on both experts, and a
    second run fetches nothing."""
    from backend.pipeline.wan.wan_engine import WanEngine
    from backend.utils.config import Settings
    from backend.utils.model_registry import WAN22
    from tests.helpers.tiny_wan import lightx2v_style_lora, save_tiny_wan22_pipeline

    tiny = save_tiny_wan22_pipeline(tmp_path / "tiny")
    files = {p.relative_to(tiny).as_posix(): p.read_bytes() for p in tiny.rglob("*") if p.is_file()}
    files["README.md"] = b"# not needed\n"
    loras = {}
    for i, (_attr, name) in enumerate(WAN22.loras):
        loras[name] = lightx2v_style_lora(tmp_path / "l" / name, seed=i, image_branch=False).read_bytes()
    loras["wan2.2_t2v_A14b_high_noise_lora_rank64_lightx2v_4step_1217.safetensors"] = b"not this one"
    server.repos = {WAN22.repo: Repo(files), WAN22.lora_repo: Repo(loras)}

    r = run_script(tmp_path, server, "--only", "wan22")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "README.md" not in server.bodies and not any("t2v" in b for b in server.bodies)
    models = tmp_path / "models"
    weights = list((models / WAN22.folder).rglob("*.safetensors"))
    assert {p.parent.name for p in weights} >= {"transformer", "transformer_2", "text_encoder", "vae"}
    assert all(p.is_symlink() for p in weights)

    engine = WanEngine(Settings(models_dir=models, device="cpu", wan_model=WAN22.key))
    assert engine.describe()["installed"] is True and engine.describe()["fast_mode"] is True
    engine.load()
    assert engine.pipe.transformer_2 is not None and engine.lora is not None and engine.lora.layers == 40

    server.bodies.clear()
    r = run_script(tmp_path, server, "--only", "wan22")
    assert r.returncode == 0, r.stderr
    assert server.bodies == [] and "already complete" in r.stdout
