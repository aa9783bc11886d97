"""Slow request heads against a real studio on loopback: how many are still held, and how fast
/api/health answers meanwhile.

    .venv/bin/python benchmarks/slow_headers.py [--start module|uvicorn] [--connections 200]
        [--every 2] [--duration 60] [--sources 1]

`--start module` runs `python -m backend` (guarded: STUDIO_HEADER_TIMEOUT_S,
STUDIO_MAX_CONNECTIONS_PER_ADDRESS); `--start uvicorn` runs `uvicorn backend.app:create_app
--factory`, uvicorn's own protocol (the "before" figure). N connections (from `--sources` loopback
addresses 127.0.0.2, 127.0.0.3, …) each send a request head one byte every `--every` seconds and
never finish it; a client on 127.0.0.1 asks /api/health every 0.2 s. Printed: connections still
open at 15, 30 and 60 s, how many were refused at once, and health latencies (p50, p99, max,
failures). Bounded: everything stops after `--duration` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HEAD = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4096


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, port: int, data: Path, env_extra: dict[str, str]) -> subprocess.Popen:
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(data),
        "STUDIO_DEVICE": "cpu",
        "STUDIO_HOST": "127.0.0.1",
        "STUDIO_PORT": str(port),
        "STUDIO_MODELS_DIR": str(data / "models"),
        "HF_HUB_OFFLINE": "1",
        "STUDIO_TRANSLATE_SERVICE_URL": "127.0.0.1:9",
        **env_extra,
    }
    if kind == "module":
        cmd = [sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "backend.app:create_app", "--factory"]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start")


async def slow_head(port: int, source: str, every: float, duration: float, started: float) -> tuple[float, bytes]:
    """→ (seconds until the server closed it, or `duration` if still open; the first bytes it answered)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        return 0.0, b"connect failed"
    answer = b""
    closed_at = duration
    try:
        for i in range(len(HEAD)):
            if time.monotonic() - started >= duration:
                break
            try:
                writer.write(HEAD[i : i + 1])
                await writer.drain()
            except (ConnectionError, OSError):
                closed_at = time.monotonic() - started
                break
            try:
                data = await asyncio.wait_for(reader.read(4096), every)
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, OSError):
                closed_at = time.monotonic() - started
                break
            answer += data
            if not data:  # EOF: the server closed it
                closed_at = time.monotonic() - started
                break
    finally:
        writer.close()
    return closed_at, answer[:12]


async def health(url: str, until: float) -> tuple[list[float], int]:
    latencies, failures = [], 0
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() < until:
            t = time.monotonic()
            try:
                r = await client.get("/api/health")
                if r.status_code == 200:
                    latencies.append(time.monotonic() - t)
                else:
                    failures += 1
            except httpx.HTTPError:
                failures += 1
            await asyncio.sleep(0.2)
    return latencies, failures


async def scenario(port: int, n: int, every: float, duration: float, sources: int) -> dict:
    started = time.monotonic()
    slow = [slow_head(port, f"127.0.0.{2 + i % sources}", every, duration, started) for i in range(n)]
    results, (latencies, failures) = await asyncio.gather(
        asyncio.gather(*slow), health(f"http://127.0.0.1:{port}", started + duration)
    )
    closed = [t for t, _ in results]
    refused = sum(1 for t, a in results if a.startswith(b"HTTP/1.1 429") and t < 2)
    timed_out = sum(1 for _, a in results if a.startswith(b"HTTP/1.1 408"))
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "held_at_15s": sum(1 for t in closed if t > 15),
        "held_at_30s": sum(1 for t in closed if t > 30),
        "held_at_60s": sum(1 for t in closed if t >= duration) if duration >= 60 else None,
        "held_at_end": sum(1 for t in closed if t >= duration),
        "refused_429": refused,
        "ended_408": timed_out,
        "health_n": len(latencies),
        "health_failures": failures,
        "health_p50_ms": pct(0.5),
        "health_p99_ms": pct(0.99),
        "health_max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "health_mean_ms": statistics.mean(latencies) * 1000 if latencies else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", choices=["module", "uvicorn"], default="module")
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--sources", type=int, default=1)
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_server(args.start, port, Path(tmp), {})
        try:
            out = asyncio.run(scenario(port, args.connections, args.every, args.duration, args.sources))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(f"start={args.start} connections={args.connections} every={args.every}s sources={args.sources}")
    for k, v in out.items():
        print(f"  {k}: {v:.1f}" if isinstance(v, float) else f"  {k}: {v}")


if __name__ == "__main__":
    main()
