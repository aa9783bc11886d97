"""Slow request heads and connection counts against a real server on loopback, started as
`python -m backend` (and once as `uvicorn ... --http backend.web.connections:GuardedHttpTools`):
a head that trickles in is answered 408 and closed within the head timeout, a fast client is served
meanwhile, and one address cannot hold more than its share of connections (429 at once), while
other addresses are still served. Bounded: a few dozen connections, seconds each."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers.server import ROOT, StudioServer

HEAD_TIMEOUT_S = 2
PER_ADDRESS = 4
ENV = {"STUDIO_HEADER_TIMEOUT_S": str(HEAD_TIMEOUT_S), "STUDIO_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS)}


class ModuleServer(StudioServer):
    """StudioServer started through an entry point of our choosing."""

    def __init__(self, tmp_path, env, command: list[str]) -> None:
        super().__init__(tmp_path, env)
        self.command = command

    def start(self, timeout: float = 90.0) -> ModuleServer:
        log = open(self.log_path, "ab")
        cmd = [c.replace("{port}", str(self.port)) for c in self.command]
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")


MODULE = [sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ModuleServer(tmp_path_factory.mktemp("heads"), ENV, MODULE) as srv:
        yield srv


async def slow_head(port: int, source: str, every: float = 0.5, limit_s: float = 15.0) -> tuple[float, bytes]:
    """Sends a request head one byte every `every` s, never finishing it → (seconds until the
    server closed the connection, what it answered). `limit_s` bounds the wait."""
    head = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    started = time.monotonic()
    answer = b""
    try:
        for i in range(len(head)):
            if time.monotonic() - started > limit_s:
                return float("inf"), answer
            try:
                writer.write(head[i : i + 1])
                await writer.drain()
                data = await asyncio.wait_for(reader.read(4096), every)
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, OSError):
                return time.monotonic() - started, answer
            answer += data
            if not data:
                return time.monotonic() - started, answer
        return float("inf"), answer
    finally:
        writer.close()


async def served(url: str, until: asyncio.Event) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        while not until.is_set():
            t = time.monotonic()
            r = await c.get("/api/health")
            assert r.status_code == 200
            out.append(time.monotonic() - t)
            await asyncio.sleep(0.1)
    return out


def _check_ended(result: tuple[float, bytes]) -> None:
    elapsed, answer = result
    # Closed near the timeout: not before it, and well before the 15 s the client would go on.
    assert HEAD_TIMEOUT_S - 0.5 < elapsed < HEAD_TIMEOUT_S + 6, result
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"header_too_slow" in answer and "헤더".encode() in answer, answer


def test_a_slow_head_is_ended_and_a_fast_client_is_served_meanwhile(server):
    async def scenario():
        done = asyncio.Event()
        fast = asyncio.ensure_future(served(server.url, done))
        # Spread over addresses, so the per-address cap is not what ends them.
        results = await asyncio.gather(*(slow_head(server.port, f"127.0.0.{10 + i}") for i in range(12)))
        done.set()
        return results, await fast

    results, latencies = asyncio.run(scenario())
    for result in results:
        _check_ended(result)
    assert len(latencies) >= 5 and max(latencies) < 3.0, latencies


def test_a_slow_head_on_a_kept_alive_connection_is_ended_too(server):
    async def scenario():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.40", 0))
        try:
            writer.write(b"GET /api/meta HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert first.startswith(b"HTTP/1.1 200 ")
            length = int(
                next(h for h in first.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
            )
            await reader.readexactly(length)
            started = time.monotonic()
            answer = b""
            for byte in b"GET /api/meta HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
                writer.write(bytes([byte]))
                try:
                    data = await asyncio.wait_for(reader.read(4096), 0.5)
                except asyncio.TimeoutError:
                    continue
                except (ConnectionError, OSError):
                    break
                answer += data
                if not data:
                    break
            return time.monotonic() - started, answer
        finally:
            writer.close()

    _check_ended(asyncio.run(scenario()))


def test_one_address_holds_at_most_its_share_of_connections(server):
    async def scenario():
        held = [
            await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.50", 0))
            for _ in range(PER_ADDRESS)
        ]
        await asyncio.sleep(0.3)
        try:
            extra = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.50", 0))
                t = time.monotonic()
                answer = await asyncio.wait_for(reader.read(), 5)  # up to the close
                extra.append((time.monotonic() - t, answer))
                writer.close()
            # Another address is served meanwhile.
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                other = (await c.get("/api/health")).status_code
        finally:
            for _, writer in held:
                writer.close()
        await asyncio.sleep(0.5)
        # Once they are closed, the address may connect again.
        async with httpx.AsyncClient(
            base_url=server.url, timeout=10, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.50")
        ) as c:
            again = (await c.get("/api/health")).status_code
        return extra, other, again

    extra, other, again = asyncio.run(scenario())
    for elapsed, answer in extra:
        assert elapsed < 2.0, elapsed  # at once
        assert answer.startswith(b"HTTP/1.1 429 "), answer[:200]
        assert b"connections_per_address" in answer and "연결".encode() in answer
        assert b"connection: close" in answer.lower()
    assert other == 200 and again == 200


def test_uvicorn_started_by_hand_gets_the_guard_with_its_http_option(tmp_path):
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "backend.app:app",
        "--http",
        "backend.web.connections:GuardedHttpTools",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--log-level",
        "warning",
    ]
    with ModuleServer(tmp_path, ENV, command) as srv:
        _check_ended(asyncio.run(slow_head(srv.port, "127.0.0.60")))
