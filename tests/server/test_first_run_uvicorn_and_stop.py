"""The seed's uvicorn commands on a real server, and a graceful stop while downloads hang.

A "stalled" host is a real TCP listener on loopback that accepts connections and never answers,
which is what a firewall that drops packets after the handshake, or an overloaded hub, looks
like to the studio.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import ROOT, free_port
from tests.helpers.uploads import upload_scenes


class Blackhole:
    """Accepts TCP connections and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        self.accepted = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIO_", "HF_", "UVICORN_"))}
    env.update(
        {
            "STUDIO_DATA_DIR": str(tmp_path / "data"),
            "STUDIO_MODELS_DIR": str(tmp_path / "models"),
            "STUDIO_DEVICE": "cpu",
            "STUDIO_TRANSLATE_SERVICE_URL": "127.0.0.1:9",
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        }
    )
    env.update(extra)
    return env


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *args], cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT
    )


def _wait_up(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0, **kwargs) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            return httpx.get(url + "/api/health", timeout=5, **kwargs)
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"no answer in {timeout}s:\n{log.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> float:
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return float("inf")
    return time.monotonic() - started


def test_the_seeds_uvicorn_command_serves(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    proc = _start(["backend.app:app", "--host", "127.0.0.1", "--port", str(port)], _env(tmp_path), log)
    try:
        r = _wait_up(f"http://127.0.0.1:{port}", proc, log)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert r.json()["engines"]["morph"]["ready"] is True
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        assert _stop(proc) < 10
    assert 'Attribute "app" not found' not in log.read_text(errors="replace")


@pytest.mark.parametrize("target", [["backend.app:create_app", "--factory"], ["backend.app:app"]])
def test_uvicorn_on_all_interfaces_without_a_token_gets_one(tmp_path, target):
    port = free_port()
    log = tmp_path / "server.log"
    proc = _start([*target, "--host", "0.0.0.0", "--port", str(port)], _env(tmp_path), log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, proc, log)
        token = (tmp_path / "data" / ".studio_token").read_text().strip()
        assert token and token in log.read_text(errors="replace")  # printed, as python -m backend does
        assert httpx.get(base + "/api/jobs", timeout=10).status_code == 401
        r = httpx.get(base + "/api/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200
    finally:
        assert _stop(proc) < 10


def _upload(base: str, n: int = 2) -> list[str]:
    return upload_scenes(base, n, size=(96, 96), shift=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_within_10_s_while_downloads_hang(tmp_path, sig):
    """The hub and the weight host both accept and never answer: OpenCLIP's download hangs in the
    analysis thread, a job's RIFE download hangs in the morph lane. The stop still takes < 10 s
    and the job is left `interrupted`, to resume at the next start."""
    hole = Blackhole()
    port = free_port()
    log = tmp_path / "server.log"
    env = _env(
        tmp_path,
        HF_ENDPOINT=hole.url,
        STUDIO_WEIGHTS_MIRROR=hole.url,
        STUDIO_WEIGHTS_DOWNLOAD_TIMEOUT_S="120",
        STUDIO_ANALYSIS_LOAD_TIMEOUT_S="120",
    )
    proc = _start(["backend.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base, proc, log)
        ids = _upload(base)
        started = time.monotonic()
        assert httpx.post(base + "/api/analyze", json={"images": ids}, timeout=10).json()["state"] == "loading"
        assert time.monotonic() - started < 2
        r = httpx.post(
            base + "/api/jobs",
            timeout=10,
            json={
                "images": ids,
                "engine": "morph",
                "settings": {"resolution": 64, "seconds": 1, "seed": 1},
                "postprocess": {"mode": "manual", "interpolate": 2},
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:  # wait until the job sits in its download
            job = httpx.get(f"{base}/api/jobs/{job_id}", timeout=10).json()
            # Joined (80 % of a post-processed job) and both hosts holding a connection: the
            # RIFE download has started and hangs (no byte arrives, so no download progress).
            in_post = job["stage"] in ("interpolate", "download", "postprocess") or job["progress"] >= 0.79
            if in_post and len(hole.held) >= 2:
                break
            assert job["status"] in ("queued", "running"), job
            assert time.monotonic() < deadline, (job, len(hole.held))
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        took = _stop(proc, sig)
        hole.close()
    assert took < 10, f"stop took {took:.1f}s:\n{log.read_text(errors='replace')[-3000:]}"
    with sqlite3.connect(tmp_path / "data" / "studio.sqlite3") as db:
        status = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    assert status == "interrupted"
