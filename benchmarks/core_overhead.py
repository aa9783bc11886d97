"""The studio core's own cost: job overhead over the bare diffusers pipeline, and event latency.

1. Overhead: the same tiny FramePack transition is run alternately (a) by calling diffusers'
   HunyuanVideoFramepackPipeline directly and (b) as a studio job through the real server (upload
   done beforehand; timed from POST /api/jobs to the `job.completed` event, so it includes the
   queue, image preparation, hooks, previews, segment encode, join and SQLite writes). Both run in
   turn, one at a time (the server in its own process, as in production); medians are compared.
2. Latency: N WebSocket clients are connected while a job runs; every event carries the worker's
   `ts` stamp, so receive time − ts is the worker → client latency (same clock).

    .venv/bin/python benchmarks/core_overhead.py [--runs 5] [--clients 100] [--steps 25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_job_and_listen(ws_url: str, base: str, body: dict, clients: int) -> tuple[float, list[float], int]:
    """Starts `clients` listeners, submits the job, returns (job seconds, latencies ms, events)."""
    import httpx
    import websockets

    latencies: list[float] = []
    slowest.clear()
    done = asyncio.Event()
    job_holder: dict = {}
    finished_at: dict = {}

    async def listen(primary: bool):
        async with websockets.connect(ws_url, max_queue=None) as ws:
            await ws.recv()  # snapshot
            ready.append(1)
            while True:
                msg = json.loads(await ws.recv())
                now = time.time()
                if "ts" in msg:
                    latencies.append((now - msg["ts"]) * 1000)
                    if primary:
                        slowest.append(((now - msg["ts"]) * 1000, msg["type"], msg.get("stage"), msg.get("step")))
                if msg.get("type") in ("job.completed", "job.failed") and msg.get("job_id") == job_holder.get("id"):
                    if primary:
                        finished_at["t"] = time.perf_counter()
                        done.set()
                    return

    ready: list[int] = []
    tasks = [asyncio.create_task(listen(i == 0)) for i in range(max(1, clients))]
    while len(ready) < len(tasks):
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        t0 = time.perf_counter()
        r = await client.post("/api/jobs", json=body)
        r.raise_for_status()
        job_holder["id"] = r.json()["id"]
        await asyncio.wait_for(done.wait(), 600)
        elapsed = finished_at["t"] - t0
        job = (await client.get(f"/api/jobs/{job_holder['id']}")).json()
        if job["status"] != "completed":
            raise RuntimeError(f"job failed: {job['error']}")
    await asyncio.gather(*tasks)
    return elapsed, latencies, len(latencies)


slowest: list[tuple] = []  # (ms, type, stage, step) seen by the first client of the last run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--steps-quality", type=int, default=100, help="quality slider (100 → 25 steps)")
    parser.add_argument("--seconds", type=float, default=2.4)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import httpx
    import torch
    from diffusers import HunyuanVideoFramepackPipeline
    from PIL import Image

    from backend.contracts.models import JobSettings
    from backend.jobs import params as smart_params
    from backend.pipeline.preprocessor import fit_image
    from tests.helpers.images import encoded, scene
    from tests.helpers.server import StudioServer
    from tests.helpers.tiny_framepack import save_tiny_pipeline

    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    pipeline_dir = save_tiny_pipeline(tmp / "framepack")
    # The server runs in its own process, as in production: the clients here do not share its GIL.
    server = StudioServer(tmp, {"FRAMEPACK_DIR": str(pipeline_dir)}).start()
    base, ws_url = server.url, server.ws_url

    images = [scene(96, 96), scene(96, 96, shift=12, hue=70)]
    with httpx.Client(base_url=base, timeout=60) as client:
        files = [("files", (f"{i}.png", encoded(img), "image/png")) for i, img in enumerate(images)]
        ids = [u["id"] for u in client.post("/api/uploads", files=files).json()["uploads"]]
    job_settings = {
        "seconds": args.seconds,
        "quality": args.steps_quality,
        "strength": 50,
        "resolution": args.resolution,
        "seed": 5,
    }
    body = {"images": ids, "engine": "framepack", "prompt": "a cat walks", "settings": job_settings}
    params = smart_params.resolve(JobSettings(**job_settings), 1, [(96, 96)])
    w, h = params["width"], params["height"]
    first = Image.fromarray(fit_image(images[0], w, h))
    last = Image.fromarray(fit_image(images[1], w, h))
    segment = params["segments"][0]

    pipe = HunyuanVideoFramepackPipeline.from_pretrained(str(pipeline_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)

    def direct() -> float:
        t0 = time.perf_counter()
        pipe(
            image=first,
            last_image=last,
            prompt="a cat walks",
            height=h,
            width=w,
            num_frames=segment["sections"] * 33,
            latent_window_size=9,
            num_inference_steps=params["steps"],
            guidance_scale=10.0,
            true_cfg_scale=1.0,
            sampling_type="inverted_anti_drifting",
            generator=torch.Generator("cpu").manual_seed(5),
            output_type="np",
        )
        return time.perf_counter() - t0

    # Warm both paths (model load in the studio, first-call allocations in both).
    direct()
    asyncio.run(run_job_and_listen(ws_url, base, body, 1))
    direct_times, studio_times = [], []
    for _ in range(args.runs):
        direct_times.append(direct())
        studio_times.append(asyncio.run(run_job_and_listen(ws_url, base, body, 1))[0])
    d, s = statistics.median(direct_times), statistics.median(studio_times)

    # Event latency with many clients: a morph job sends an event per frame (many, fast).
    morph_body = {**body, "engine": "morph", "settings": {**job_settings, "seconds": 4.8, "resolution": 256}}
    _, latencies, count = asyncio.run(run_job_and_listen(ws_url, base, morph_body, args.clients))
    _, fp_latencies, fp_count = asyncio.run(run_job_and_listen(ws_url, base, body, args.clients))
    server.stop()
    worst = sorted(slowest, reverse=True)[:5]

    result = {
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "device": "cpu"},
        "job": {
            "resolution": f"{w}x{h}",
            "sections": segment["sections"],
            "steps": params["steps"],
            "frames": segment["frames"],
        },
        "direct_pipeline_s_median": round(d, 4),
        "studio_job_s_median": round(s, 4),
        "overhead_ratio": round(s / d, 4),
        "overhead_pct": round((s / d - 1) * 100, 2),
        "runs": args.runs,
        "direct_s": [round(x, 4) for x in direct_times],
        "studio_s": [round(x, 4) for x in studio_times],
        "latency_clients": args.clients,
        "morph_events_received": count,
        "morph_latency_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p99": round(percentile(latencies, 99), 2),
            "max": round(max(latencies), 2),
        },
        "framepack_slowest_events": [[round(ms, 1), kind, stage, step] for ms, kind, stage, step in worst],
        "framepack_events_received": fp_count,
        "framepack_latency_ms": {
            "p50": round(percentile(fp_latencies, 50), 2),
            "p99": round(percentile(fp_latencies, 99), 2),
            "max": round(max(fp_latencies), 2),
        },
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
