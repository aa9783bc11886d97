"""Slow request bodies against a real server on loopback, from real sockets: a client trickling
bytes is ended (408), uploads in flight are bounded in all and per client (503 / 429 at once),
and everyone else is served meanwhile. Bounded: a few dozen connections, seconds each."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.helpers.images import encoded, scene

BOUNDARY = "slow-boundary"
IN_FLIGHT, PER_CLIENT = 6, 2


SERVER_ENV = {  # the folder's `server`
    "STUDIO_BODY_IDLE_TIMEOUT_S": "1",
    "STUDIO_BODY_MIN_RATE_KB_S": "4",
    "STUDIO_BODY_MAX_S": "30",
    "STUDIO_MAX_UPLOADS_IN_FLIGHT": str(IN_FLIGHT),
    "STUDIO_MAX_UPLOADS_PER_CLIENT": str(PER_CLIENT),
}


def _upload_head(total: int) -> bytes:
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="slow.png"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode()
    return (
        (
            f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {total}\r\n\r\n"
        ).encode()
        + part
        + b"\x89PNG\r\n\x1a\n"
    )


async def trickle(
    port: int, source: str, head: bytes, every_s: float = 0.3, limit_s: float = 8.0, stop_after: int | None = None
) -> tuple[int | None, float, bool]:
    """Sends `head`, then one byte every `every_s` (or nothing after `stop_after` bytes) until the
    server answers or `limit_s` passes → (status or None, seconds to the answer, closed by server)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    started = time.monotonic()
    writer.write(head)
    answer = asyncio.ensure_future(reader.read(4096))
    sent = 0
    try:
        while not answer.done() and time.monotonic() - started < limit_s:
            if stop_after is None or sent < stop_after:
                try:
                    writer.write(b"\0")
                    await writer.drain()
                    sent += 1
                except (ConnectionError, OSError):
                    break
            await asyncio.wait([answer], timeout=every_s)
        if not answer.done():
            answer.cancel()
            return None, time.monotonic() - started, False
        raw = answer.result()
        elapsed = time.monotonic() - started
        rest = b""
        try:
            while chunk := await asyncio.wait_for(reader.read(4096), 3):
                rest += chunk
            closed = True
        except (asyncio.TimeoutError, ConnectionError):
            closed = False
        status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None
        return status, elapsed, closed
    finally:
        writer.close()


async def health_latencies(url: str, until: asyncio.Event) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        while not until.is_set():
            t = time.monotonic()
            r = await c.get("/api/health")
            assert r.status_code == 200
            out.append(time.monotonic() - t)
            await asyncio.sleep(0.1)
    return out


def parts(server) -> list:
    return list(server.data_dir.rglob("*.part"))


def test_trickling_uploads_are_ended_and_others_are_served(server):
    async def scenario():
        done = asyncio.Event()
        health = asyncio.ensure_future(health_latencies(server.url, done))
        clients = [trickle(server.port, f"127.0.0.{10 + i}", _upload_head(200_000)) for i in range(30)]
        results = await asyncio.gather(*clients)
        done.set()
        return results, await health

    results, latencies = asyncio.run(scenario())
    statuses = [r[0] for r in results]
    assert None not in statuses, results  # every connection was answered, none held to the end
    assert statuses.count(408) == IN_FLIGHT and statuses.count(503) == 30 - IN_FLIGHT, statuses
    for status, elapsed, closed in results:
        assert closed, "a refused connection is closed, its body never read"
        if status == 503:
            assert elapsed < 2.0, elapsed  # at once, without reading the body
        else:
            assert elapsed < 5.0, elapsed  # idle/rate limit of 1 s (4 KB/s), not the 8 s of trickle
    assert latencies and max(latencies) < 2.0, latencies
    assert parts(server) == []
    # The slots are free again: an ordinary upload goes through.
    r = httpx.post(
        server.url + "/api/uploads", timeout=30, files=[("files", ("ok.png", encoded(scene(48, 40)), "image/png"))]
    )
    assert r.status_code == 201, r.text


def test_one_client_holds_at_most_its_share_of_upload_slots(server):
    async def scenario():
        return await asyncio.gather(*(trickle(server.port, "127.0.0.77", _upload_head(200_000)) for _ in range(4)))

    statuses = [r[0] for r in asyncio.run(scenario())]
    assert None not in statuses, statuses
    statuses.sort()
    assert statuses == [408] * PER_CLIENT + [429] * (4 - PER_CLIENT), statuses
    assert parts(server) == []


def test_a_slow_or_stalled_json_body_is_ended(server):
    head = (
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 400\r\n\r\n{"images": ['
    )

    async def scenario():
        return await asyncio.gather(
            trickle(server.port, "127.0.0.90", head), trickle(server.port, "127.0.0.91", head, stop_after=3)
        )

    (trickled, t1, _), (stalled, t2, _) = asyncio.run(scenario())
    assert (trickled, stalled) == (408, 408)
    assert t1 < 5 and t2 < 5


def test_the_408_says_what_happened(server):
    async def raw():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.95", 0))
        writer.write(_upload_head(200_000))
        data = await asyncio.wait_for(reader.read(), 10)  # up to the close
        writer.close()
        return data.decode("utf-8", "replace")

    answer = asyncio.run(raw())
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "connection: close" in answer.lower()
    assert "too slowly" in answer and "느리게" in answer
