"""A real studio server (uvicorn in a subprocess) on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StudioServer:
    """`with StudioServer(tmp_path, {"FRAMEPACK_DIR": ...}) as server:` → `server.url`, `server.ws_url`.

    Data lives in `tmp_path / "data"` unless STUDIO_DATA_DIR is given, so a second server started on
    the same folder sees the first one's jobs (restart tests). Nothing is downloaded: the hub is
    offline and the device is the CPU.
    """

    def __init__(
        self, tmp_path: Path, env: dict[str, str] | None = None, port: int | None = None, log_level: str = "warning"
    ) -> None:
        self.tmp_path = Path(tmp_path)
        self.log_level = log_level
        self.port = port or free_port()
        self.data_dir = Path((env or {}).get("STUDIO_DATA_DIR", self.tmp_path / "data"))
        self.log_path = self.tmp_path / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "STUDIO_DATA_DIR": str(self.data_dir),
            "STUDIO_DEVICE": "cpu",
            "STUDIO_HOST": "127.0.0.1",
            "STUDIO_PORT": str(self.port),
            "STUDIO_MODELS_DIR": str(self.tmp_path / "models"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            # No test reaches the internet: the translator is aimed at a closed loopback port.
            "STUDIO_TRANSLATE_SERVICE_URL": "127.0.0.1:9",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self, timeout: float = 90.0) -> StudioServer:
        """Starts uvicorn and waits until *this* process listens on the port and answers. A free
        port found by `free_port` can be taken by another test's server before uvicorn binds it
        (xdist workers start servers side by side); then that other server would answer /api/health
        and the tests would talk to it (seen in CI: its limits were not this test's). A first start
        that loses its port this way moves to another free port."""
        first = self.process is None
        for _ in range(3):
            if self._spawn_and_wait(timeout) or not first:
                return self
            self._use_port(free_port())
        raise RuntimeError(f"no free port held for the server after 3 tries:\n{self.log()}")

    def _use_port(self, port: int) -> None:
        self.port = port
        self.env["STUDIO_PORT"] = str(port)
        self.log_path = self.tmp_path / f"server-{port}.log"

    def _spawn_and_wait(self, timeout: float) -> bool:
        """True once ready; False when uvicorn could not bind the port (it is someone else's)."""
        self.tmp_path.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "backend.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                self.log_level,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "address already in use" in self.log().lower():
                    return False
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self._listening() and httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def _listening(self) -> bool:
        """Whether this server's own process holds the listening socket on `self.port`."""
        import psutil

        try:
            connections = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port for c in connections)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown code runs, as in a crash."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> StudioServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- fixtures: imported by the conftest.py of each folder whose tests use them -------------------
# A module's tests share one server, started with the module's `SERVER_ENV` (a dict, default none)
# or, where the environment needs other fixtures, the module's own `server_env` fixture; `client`
# sends the module's `CLIENT_HEADERS` (e.g. a token) with every request.


@pytest.fixture(scope="module")
def server_env(request) -> dict[str, str]:
    return dict(getattr(request.module, "SERVER_ENV", {}))


@pytest.fixture(scope="module")
def server(request, tmp_path_factory, server_env):
    """One real studio (uvicorn on loopback) for the whole test module."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with StudioServer(tmp_path_factory.mktemp(name), server_env) as srv:
        yield srv


@pytest.fixture
def client(request, server):
    headers = getattr(request.module, "CLIENT_HEADERS", None)
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as c:
        yield c
