"""The Docker way, built and run for real with podman: docker/Dockerfile, docker/entrypoint.sh and
docker/docker-compose.yml.

The image is built from a clean checkout on a debootstrap Debian base with PyPI's torch (no
registry is reachable here; users get the CUDA runtime base). A container then runs the way the
compose file says (its environment, port, volumes, healthcheck; the image's user), on the CPU:
first start with fresh volumes, a morph job through the published port, a new container on the
same volumes, then the compose file itself through podman-compose with the CPU override
tests/docker-compose.cpu.yml. The model downloads cannot reach the hub here, which is the failure
the entrypoint must survive.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from backend.utils.video_io import probe
from tests.helpers import podman as pm
from tests.helpers.images import encoded, scene
from tests.helpers.server import ROOT

TAG = "localhost/framepack-studio:test"
STUDIO_UID = 10001
PODMAN_OWN_PATHS = {"/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run", "/run/.containerenv"}
pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(3600)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    try:
        pm.check_available()
    except pm.PodmanUnavailable as exc:
        # In CI the set-up installs them as root, so there a missing one is a failure.
        if os.environ.get("CI"):
            pytest.fail(f"podman/buildah cannot run in CI: {exc}")
        pytest.skip(f"podman/buildah cannot run here: {exc}")
    with pm.store_lock():
        dest = pm.clean_checkout(tmp_path_factory.mktemp("checkout") / "studio", ROOT)
        shutil.copy(dest / ".env.sample", dest / ".env")  # the README's first step
        yield dest


@pytest.fixture(scope="module")
def image(checkout) -> dict:
    base_s = pm.ensure_base_image()
    build_s, log = pm.build(checkout, TAG)
    figures = {
        "base_image_s": round(base_s, 1),
        "build_s": round(build_s, 1),
        "image_bytes": pm.image_size(TAG),
        "cached_steps": log.count("Using cache"),
    }
    print(f"\n[image] {json.dumps(figures)}")
    return figures


@pytest.fixture(scope="module")
def compose_service(checkout) -> dict:
    return yaml.safe_load((checkout / "docker" / "docker-compose.yml").read_text())["services"]["studio"]


def api(port: int, token: str | None = None, timeout: float = 30) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=timeout)


def wait_healthy_port(port: int, name: str, timeout: float = 900) -> dict:
    # Generous: where DNS hangs instead of failing fast, the first start's download attempts (each
    # bounded) take minutes before the server listens.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = pm.podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()
        if state not in ("running", "created", "configured"):
            raise AssertionError(f"container {name} is {state}:\n{logs(name)}")
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"/api/health did not answer in {timeout}s:\n{logs(name)}")


def logs(name: str) -> str:
    r = pm.podman("logs", name, check=False)
    return r.stdout + r.stderr


def access_token(log: str) -> str:
    found = re.findall(r"Access token: (\S+)", log)
    assert found, f"no access token in the log:\n{log}"
    return found[-1]


def run_morph_job(port: int, token: str, name: str) -> dict:
    try:
        return _run_morph_job(port, token)
    except (httpx.HTTPError, AssertionError) as exc:
        raise AssertionError(f"{exc!r}\n--- container log:\n{logs(name)[-4000:]}") from exc


def _run_morph_job(port: int, token: str) -> dict:
    with api(port, token) as client:
        files = [
            ("files", (f"k{i}.png", encoded(scene(96, 64, shift=12 * i, hue=50 * i)), "image/png")) for i in range(2)
        ]
        r = client.post("/api/uploads", files=files)
        assert r.status_code == 201, r.text
        ids = [u["id"] for u in r.json()["uploads"]]
        # Job creation awaits the image-analysis model (bounded by STUDIO_ANALYSIS_LOAD_TIMEOUT_S,
        # 60 s): its hub download cannot succeed here and huggingface_hub retries for a while.
        start = time.monotonic()
        r = client.post(
            "/api/jobs",
            json={"images": ids, "engine": "morph", "prompt": "", "settings": {"seconds": 1, "resolution": 64}},
            timeout=150,
        )
        print(f"\n[job] POST /api/jobs answered in {time.monotonic() - start:.1f}s")
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = client.get(f"/api/jobs/{job_id}").json()
            if job["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.3)
        assert job["status"] == "completed", job
        return job


def healthcheck_args(service: dict) -> list[str]:
    hc = service["healthcheck"]
    assert hc["test"][0] == "CMD-SHELL" and len(hc["test"]) == 2
    return [
        "--health-cmd",
        hc["test"][1],
        "--health-interval",
        hc["interval"],
        "--health-timeout",
        hc["timeout"],
        "--health-retries",
        str(hc["retries"]),
        "--health-start-period",
        hc["start_period"],
    ]


def volume_path(name: str) -> Path:
    return Path(pm.podman("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip())


def stop_timed(name: str) -> tuple[float, int]:
    """`podman stop` with a grace period far longer than allowed, so the seconds measured are the
    studio's own shutdown, not podman's SIGKILL."""
    start = time.monotonic()
    pm.podman("stop", "--time", "60", name, timeout=90)
    seconds = time.monotonic() - start
    code = int(pm.podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip())
    print(f"\n[stop] {name}: {seconds:.1f}s, exit code {code}")
    return seconds, code


class Studio:
    """Containers of the image run as `docker compose up` would run the service: same env file,
    environment, volumes and healthcheck, the port published on loopback only."""

    def __init__(self, checkout: Path, service: dict, prefix: str):
        self.checkout = checkout
        self.service = service
        self.prefix = prefix
        self.volumes = {v.split(":")[0]: v.split(":")[1] for v in service["volumes"]}
        self.containers: list[str] = []

    def volume(self, short: str) -> str:
        return f"{self.prefix}_{short}"

    def start(self, extra_env: dict[str, str] | None = None) -> tuple[str, int]:
        name = f"{self.prefix}-{len(self.containers) + 1}"
        port = free_port()
        args = ["run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "--env-file", str(self.checkout / ".env")]
        env = {
            **{k: str(v) for k, v in self.service["environment"].items()},
            "STUDIO_DEVICE": "cpu",
            **(extra_env or {}),
        }
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        for short, target in self.volumes.items():
            args += ["-v", f"{self.volume(short)}:{target}"]
        args += healthcheck_args(self.service)
        pm.podman(*args, TAG, timeout=120)
        self.containers.append(name)
        return name, port

    def cleanup(self) -> None:
        for name in self.containers:
            pm.podman("rm", "-f", "-t", "0", name, check=False)
        for short in self.volumes:
            pm.podman("volume", "rm", "-f", self.volume(short), check=False)


@pytest.fixture
def studio(checkout, compose_service, image):
    s = Studio(checkout, compose_service, f"studiotest{uuid.uuid4().hex[:8]}")
    yield s
    s.cleanup()


def test_image_holds_no_build_machine_files(image):
    """The build's CA bundle and pip config were mounts: nothing of them is in the image."""
    r = pm.podman(
        "run",
        "--rm",
        "--user",
        "0",
        "--entrypoint",
        "sh",
        TAG,
        "-c",
        "ls -A /mnt /root/.cache/pip; cat /etc/pip.conf 2>/dev/null; true",
    )
    assert r.stdout.split() == ["/mnt:", "/root/.cache/pip:"], r.stdout
    assert pm.podman("image", "inspect", "--format", "{{.Config.User}}", TAG).stdout.strip() == "10001:10001"


def test_container_first_start_job_and_restart_on_the_same_volumes(studio, image):
    # --- first start, fresh volumes ------------------------------------------------------------
    first, port = studio.start()
    health = wait_healthy_port(port, first)
    assert health["status"] == "ok" and health["device"]["type"] == "cpu", health
    log = logs(first)
    assert "[entrypoint] checking models in /models" in log
    assert "[FAILED]" in log and "some models are missing; starting anyway" in log, log
    assert "FramePack Video Studio: http://127.0.0.1:8000/" in log
    assert "[FAILED] FramePack" in log and "check the network connection" in log
    assert health["engines"]["morph"]["ready"] is True
    # What did not arrive is named with what to do.
    assert "downloads on first use" in health["postprocess"]["missing"]["realesrgan-x4plus"]
    token = access_token(log)
    with api(port) as anonymous:
        assert anonymous.get("/api/jobs").status_code == 401  # published on 0.0.0.0 inside: token on

    r = pm.podman("healthcheck", "run", first, check=False, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    # The same command fails where nothing answers, so "healthy" means the studio answered.
    dead = studio.service["healthcheck"]["test"][1].replace("127.0.0.1:8000", "127.0.0.1:8009")
    assert pm.podman("exec", first, "sh", "-c", dead, check=False).returncode != 0

    # The studio (PID 1 after the entrypoint's exec) runs as the image's non-root user.
    status = pm.podman("exec", first, "cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M).groups()
    assert uids == (str(STUDIO_UID), str(STUDIO_UID))
    cmdline = pm.podman("exec", first, "cat", "/proc/1/cmdline").stdout.replace("\0", " ")
    assert cmdline.startswith("python -m backend")

    job = run_morph_job(port, token, first)
    outputs = volume_path(studio.volume("outputs"))
    video = outputs / job["id"] / "final.mp4"
    assert video.is_file(), list(outputs.rglob("*"))
    assert video.stat().st_uid == STUDIO_UID
    assert probe(video).frames > 1
    with api(port, token) as client:
        served = client.get(job["video_url"])
        assert served.status_code == 200 and served.content == video.read_bytes()
    uploads = list(volume_path(studio.volume("uploads")).iterdir())
    assert uploads, "the uploaded images are not in the uploads volume"
    assert (volume_path(studio.volume("state")) / "studio.sqlite3").is_file()

    # Nothing was written outside the volumes: the container's own layer holds only the mount
    # points podman itself puts in /etc (hosts, hostname, resolv.conf) and /run.
    changed = pm.podman("diff", "--format", "json", first).stdout
    changed = {path for paths in json.loads(changed or "{}").values() for path in paths}
    assert changed <= PODMAN_OWN_PATHS, changed - PODMAN_OWN_PATHS

    seconds, code = stop_timed(first)
    assert seconds < 10 and code == 0, (seconds, code, logs(first)[-2000:])
    pm.podman("rm", first)

    # --- a new container on the same volumes ---------------------------------------------------
    second, port2 = studio.start()
    wait_healthy_port(port2, second)
    log2 = logs(second)
    assert access_token(log2) == token  # saved in the state volume, so open pages stay logged in
    # The first start's downloads failed moments ago: this start does not wait on the hub again
    # (STUDIO_DOWNLOAD_RETRY_H), says so, and the studio still names what is missing.
    assert "[entrypoint] skipping the model downloads: they failed at" in log2
    assert "[entrypoint] checking models in /models" not in log2
    assert "[FAILED] FramePack" not in log2
    with api(port2, token) as client:
        again = client.get(f"/api/jobs/{job['id']}").json()
        assert again["status"] == "completed"
        served = client.get(again["video_url"])
        assert served.status_code == 200 and served.content == video.read_bytes()
    seconds, code = stop_timed(second)
    assert seconds < 10 and code == 0, (seconds, code)


COMPOSE_PROJECT = "docker"  # the compose file's folder: volumes docker_models, docker_outputs, ...


def compose(checkout: Path, *args: str, port: int, timeout: float = 300) -> subprocess.CompletedProcess:
    tool = shutil.which("podman-compose")
    if tool is None:
        pytest.fail("podman-compose is not installed: run `bash scripts/setup.sh --skip-models --dev`")
    env = {**pm.environment(), "STUDIO_PUBLISH": f"127.0.0.1:{port}"}
    cmd = [
        tool,
        "-f",
        str(checkout / "docker" / "docker-compose.yml"),
        "-f",
        str(checkout / "tests" / "docker-compose.cpu.yml"),
        *args,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=checkout)
    assert r.returncode == 0, f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def project_volumes() -> list[str]:
    names = pm.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
    return sorted(n for n in names if n.startswith(COMPOSE_PROJECT + "_"))


@pytest.fixture
def compose_project(checkout, image):
    def clean():
        pm.podman("rm", "-f", "-t", "0", f"{COMPOSE_PROJECT}_studio_1", check=False)
        for name in project_volumes():
            pm.podman("volume", "rm", "-f", name, check=False)

    clean()
    # The compose file names framepack-studio:latest; the image built above is that image.
    pm.podman("tag", TAG, "localhost/framepack-studio:latest")
    yield
    clean()


# The service is named: podman-compose 1.0.3 knows no profiles and would start the `ray` profile's
# head and worker too (Compose itself starts only `studio` for a plain `up`).
def test_compose_up_and_deleting_the_model_volume_keeps_uploads_and_outputs(checkout, compose_project):
    name = f"{COMPOSE_PROJECT}_studio_1"
    port = free_port()
    compose(checkout, "up", "-d", "--no-build", "studio", port=port)
    health = wait_healthy_port(port, name)
    assert health["device"]["type"] == "cpu"
    assert project_volumes() == [f"{COMPOSE_PROJECT}_{v}" for v in ("loras", "models", "outputs", "state", "uploads")]
    inspect = json.loads(pm.podman("inspect", name).stdout)[0]
    assert inspect["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert not inspect["HostConfig"].get("Devices")  # the CPU run: no GPU handed in
    bindings = inspect["HostConfig"]["PortBindings"]["8000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    r = pm.podman("healthcheck", "run", name, check=False, timeout=60)
    assert r.returncode == 0, f"compose's healthcheck as podman-compose passed it: {r.stdout}{r.stderr}"

    token = access_token(logs(name))
    job = run_morph_job(port, token, name)
    video = volume_path(f"{COMPOSE_PROJECT}_outputs") / job["id"] / "final.mp4"
    assert video.is_file()
    uploads = sorted(p.name for p in volume_path(f"{COMPOSE_PROJECT}_uploads").iterdir())
    assert uploads
    models = volume_path(f"{COMPOSE_PROJECT}_models")
    assert (models / "studio-paths.env").is_file()  # the entrypoint's first start wrote there

    compose(checkout, "down", port=port)
    assert f"{COMPOSE_PROJECT}_models" in project_volumes()  # `down` keeps every volume
    pm.podman("volume", "rm", f"{COMPOSE_PROJECT}_models")  # the README's `docker volume rm docker_models`

    compose(checkout, "up", "-d", "--no-build", "studio", port=port)
    wait_healthy_port(port, name)
    assert (volume_path(f"{COMPOSE_PROJECT}_models") / "studio-paths.env").is_file()  # a fresh one, tried again
    assert "[entrypoint] checking models in /models" in logs(name)
    assert sorted(p.name for p in volume_path(f"{COMPOSE_PROJECT}_uploads").iterdir()) == uploads
    with api(port, token) as client:  # same token: the state volume survived too
        again = client.get(f"/api/jobs/{job['id']}").json()
        assert again["status"] == "completed"
        assert client.get(again["video_url"]).content == video.read_bytes()
    compose(checkout, "down", port=port)
