"""Event-loop latency while images are uploaded: decoding inline (the old path) vs in the pool.

The real server runs in its own process, once per mode and in turn (inline, pool, inline, pool,
...), on the same machine in the same run: `STUDIO_IMAGE_WORKERS=0` decodes and re-encodes every
upload on the event loop, which was the studio's only path before; `STUDIO_IMAGE_WORKERS=2` uses
the bounded pool. In each run N clients post a request of F large JPEGs each, at once, `--waves`
times, while a probe asks `GET /api/health` every 20 ms and another pings a WebSocket every 20 ms
(the pong needs the event loop too). Printed: p50 / p99 / max of both probes during the uploads,
the uploads' wall time, and the inline / pool ratios.

A probe that waits takes fewer samples, so a stalled loop shows in p99 and max but hides from p50.
The "corrected" figures also count the probes that would have been sent during a wait (for a
sample of L ms: L - 20, L - 40, ... ms, as HdrHistogram corrects coordinated omission): they are
what a request arriving at a random moment would see.

    .venv/bin/python benchmarks/upload_latency.py [--uploads 8] [--files 4] [--megapixels 8] \
        [--waves 1] [--repeats 2] [--out benchmarks/results/upload_latency_cpu.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROBE_EVERY_S = 0.02
MODES = {"inline": "0", "pool": "2"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def photo_like(megapixels: float, seed: int) -> bytes:
    """A JPEG with gradients, shapes and grain: decodes and re-encodes like a photo."""
    import numpy as np
    from PIL import Image, ImageFilter

    from tests.helpers.images import encoded, scene

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(width * 3 / 4)
    base = scene(width, height, shift=seed * 7, hue=seed * 13).filter(ImageFilter.GaussianBlur(2))
    grain = np.random.default_rng(seed).normal(0, 6, (height, width, 3))
    pixels = np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return encoded(Image.fromarray(pixels), "JPEG", quality=92)


async def probe_health(url: str, stop: asyncio.Event, out: list[float]) -> None:
    import httpx

    # Long timeouts: the inline reference stalls the loop for a minute or more on a busy machine.
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        while not stop.is_set():
            t = time.perf_counter()
            r = await client.get("/api/health")
            r.raise_for_status()
            out.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(PROBE_EVERY_S)


async def probe_websocket(ws_url: str, stop: asyncio.Event, out: list[float]) -> None:
    import websockets

    async with websockets.connect(ws_url, max_queue=None, ping_interval=None, open_timeout=60) as ws:
        await ws.recv()  # snapshot
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.wait_for(await ws.ping(), 900)
            out.append((time.perf_counter() - t) * 1000)
            await asyncio.sleep(PROBE_EVERY_S)


async def upload_wave(url: str, images: list[bytes], uploads: int, files: int) -> None:
    import httpx

    async def one(i: int) -> None:
        parts = [("files", (f"u{i}-{k}.jpg", images[(i + k) % len(images)], "image/jpeg")) for k in range(files)]
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            r = await client.post("/api/uploads", files=parts)
            if r.status_code != 201:
                raise RuntimeError(f"upload answered {r.status_code}: {r.text[:300]}")

    await asyncio.gather(*(one(i) for i in range(uploads)))


async def measure(url: str, ws_url: str, images: list[bytes], args) -> dict:
    # Idle first: what the probes read with nothing else going on.
    idle: list[float] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(probe_health(url, stop, idle))
    await asyncio.sleep(1.0)
    stop.set()
    await task

    health: list[float] = []
    ws: list[float] = []
    stop = asyncio.Event()
    probes = [
        asyncio.ensure_future(probe_health(url, stop, health)),
        asyncio.ensure_future(probe_websocket(ws_url, stop, ws)),
    ]
    await asyncio.sleep(0.2)
    t0 = time.perf_counter()
    for _ in range(args.waves):
        await upload_wave(url, images, args.uploads, args.files)
    wall = time.perf_counter() - t0
    stop.set()
    await asyncio.gather(*probes)
    return {"idle_health_p50_ms": statistics.median(idle), "health_ms": health, "ws_ping_ms": ws, "upload_wall_s": wall}


def corrected(samples: list[float], interval_ms: float = PROBE_EVERY_S * 1000) -> list[float]:
    out = []
    for value in samples:
        out.append(value)
        missed = value - interval_ms
        while missed >= interval_ms:
            out.append(missed)
            missed -= interval_ms
    return out


def summary(runs: list[dict]) -> dict:
    health = [v for r in runs for v in r["health_ms"]]
    ws = [v for r in runs for v in r["ws_ping_ms"]]
    fair = corrected(health)
    return {
        "health_corrected_p50_ms": percentile(fair, 50),
        "health_corrected_p99_ms": percentile(fair, 99),
        "health_p50_ms": percentile(health, 50),
        "health_p99_ms": percentile(health, 99),
        "health_max_ms": max(health),
        "health_samples": len(health),
        "ws_p50_ms": percentile(ws, 50),
        "ws_p99_ms": percentile(ws, 99),
        "ws_max_ms": max(ws),
        "ws_samples": len(ws),
        "idle_health_p50_ms": statistics.median(r["idle_health_p50_ms"] for r in runs),
        "upload_wall_s_median": statistics.median(r["upload_wall_s"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=8, help="concurrent upload requests per wave")
    parser.add_argument("--files", type=int, default=4, help="images per request")
    parser.add_argument("--megapixels", type=float, default=8.0)
    parser.add_argument("--waves", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode, alternated")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from tests.helpers.server import StudioServer

    images = [photo_like(args.megapixels, seed) for seed in range(4)]
    print(
        f"{args.uploads} concurrent uploads x {args.files} JPEGs of {args.megapixels:g} MP "
        f"({sum(map(len, images)) / len(images) / 1e6:.1f} MB each), {args.waves} waves, "
        f"{args.repeats} runs per mode",
        flush=True,
    )
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for mode, workers in MODES.items():
                folder = Path(tmp) / f"{mode}-{repeat}"
                folder.mkdir()
                env = {
                    "STUDIO_IMAGE_WORKERS": workers,
                    "STUDIO_MAX_UPLOAD_MB": "100",
                    "STUDIO_MAX_IMAGE_PIXELS": "100000000",
                    "STUDIO_MAX_UPLOADS_IN_FLIGHT": str(args.uploads),
                    "STUDIO_MAX_UPLOADS_PER_CLIENT": str(args.uploads),
                    "STUDIO_DEFAULT_ENGINE": "morph",
                }
                with StudioServer(folder, env) as server:
                    result = asyncio.run(measure(server.url, server.ws_url, images, args))
                runs[mode].append(result)
                s = summary([result])
                print(
                    f"  {mode:6s} run {repeat + 1}: health p50 {s['health_p50_ms']:.1f} ms, "
                    f"p99 {s['health_p99_ms']:.1f} ms, max {s['health_max_ms']:.1f} ms; ws ping p99 "
                    f"{s['ws_p99_ms']:.1f} ms; uploads {result['upload_wall_s']:.1f} s",
                    flush=True,
                )
    table = {mode: summary(r) for mode, r in runs.items()}
    inline, pool = table["inline"], table["pool"]
    print(
        "\nmode    health p50   p99      max      (n)    | corrected p50  p99      | ws ping p50  p99      "
        "| idle p50 | uploads"
    )
    for mode, s in table.items():
        print(
            f"{mode:7s} {s['health_p50_ms']:8.1f} {s['health_p99_ms']:8.1f} {s['health_max_ms']:8.1f} ms "
            f"({s['health_samples']:5d}) | {s['health_corrected_p50_ms']:8.1f} {s['health_corrected_p99_ms']:8.1f} ms | "
            f"{s['ws_p50_ms']:8.1f} {s['ws_p99_ms']:8.1f} ms | {s['idle_health_p50_ms']:6.1f} ms | "
            f"{s['upload_wall_s_median']:.1f} s"
        )
    ratios = {
        "health_p50": inline["health_p50_ms"] / pool["health_p50_ms"],
        "health_p99": inline["health_p99_ms"] / pool["health_p99_ms"],
        "health_corrected_p50": inline["health_corrected_p50_ms"] / pool["health_corrected_p50_ms"],
        "health_corrected_p99": inline["health_corrected_p99_ms"] / pool["health_corrected_p99_ms"],
        "ws_p99": inline["ws_p99_ms"] / pool["ws_p99_ms"],
        "upload_wall": pool["upload_wall_s_median"] / inline["upload_wall_s_median"],
    }
    print(
        f"\ninline / pool: health p50 x{ratios['health_p50']:.1f}, health p99 x{ratios['health_p99']:.1f}, "
        f"corrected p50 x{ratios['health_corrected_p50']:.1f}, corrected p99 x{ratios['health_corrected_p99']:.1f}, "
        f"ws ping p99 x{ratios['ws_p99']:.1f}; upload wall time pool / inline x{ratios['upload_wall']:.2f}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "summary": table, "ratios": ratios}, indent=2
            )
        )


if __name__ == "__main__":
    main()
