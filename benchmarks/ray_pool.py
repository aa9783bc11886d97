"""The Ray pool against the embedded studio, on this machine's CPUs (the GPU scaling run is separate).

For each engine (morph, and the tiny random FramePack model) and each set-up — the embedded studio
(one in-process worker), a Ray pool of 1 worker, a Ray pool of 2 workers (a loopback Ray cluster
with fake GPUs, as the tests start it) — a real studio server is started and measured:

1. one job of `--images` images (a transition per pair): wall time from POST /api/jobs to done;
2. `--jobs` jobs of 3 images submitted at once: jobs per hour until the last is done;
3. one transition (2 images), `--runs` times: median wall time, for the overhead of a transition
   through Ray against the embedded worker.

Ratios are against the set-ups measured in the same run. Figures depend on the cores: two workers
on a 2-core machine share those two cores. Every worker computes with one CPU thread (Ray's
default for an actor; the embedded studio is given `OMP_NUM_THREADS=1` to match, `--embedded-threads`).

    .venv/bin/python benchmarks/ray_pool.py [--engines morph,framepack] [--images 5] [--jobs 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.images import encoded, scene  # noqa: E402
from tests.helpers.ray_cluster import ray_cluster, ray_env, wait_workers  # noqa: E402
from tests.helpers.server import StudioServer  # noqa: E402

SETTINGS = {
    "morph": {"seconds": 4.8, "resolution": 256, "seed": 1},
    "framepack": {"seconds": 1.2, "quality": 40, "resolution": 64, "seed": 1},
}


def upload(c: httpx.Client, count: int, salt: int) -> list[str]:
    files = [
        ("files", (f"i{i}.png", encoded(scene(128, 112, shift=7 * i + salt, hue=40 * i + salt)), "image/png"))
        for i in range(count)
    ]
    return [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]


def wait_done(c: httpx.Client, ids: list[str], timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    left = set(ids)
    while left and time.monotonic() < deadline:
        for job_id in list(left):
            job = c.get(f"/api/jobs/{job_id}").json()
            if job["status"] in ("completed", "failed", "cancelled"):
                if job["status"] != "completed":
                    raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
                left.discard(job_id)
        time.sleep(0.05)
    if left:
        raise RuntimeError(f"jobs not done in {timeout}s: {left}")


def timed_jobs(c: httpx.Client, engine: str, image_sets: list[list[str]]) -> float:
    began = time.perf_counter()
    ids = []
    for images in image_sets:
        r = c.post("/api/jobs", json={"images": images, "engine": engine, "settings": SETTINGS[engine]})
        r.raise_for_status()
        ids.append(r.json()["id"])
    wait_done(c, ids)
    return time.perf_counter() - began


def measure(srv: StudioServer, engine: str, args) -> dict:
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        timed_jobs(c, engine, [upload(c, 2, 99)])  # warm: the engines load in every worker
        if "ray" in srv.env.get("STUDIO_CLUSTER", ""):
            timed_jobs(c, engine, [upload(c, 3, 98)])  # and in the second worker
        one = [
            timed_jobs(c, engine, [upload(c, 2, 50 + k)]) for k in range(args.runs)
        ]  # uploads are done before the clock starts in timed_jobs
        big = timed_jobs(c, engine, [upload(c, args.images, 7)])
        batch = [upload(c, 3, 20 + k) for k in range(args.jobs)]
        many = timed_jobs(c, engine, batch)
    return {
        "transition_s": statistics.median(one),
        "job_s": big,
        "jobs_per_hour": args.jobs / many * 3600,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engines", default="morph,framepack")
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--embedded-threads", type=int, default=1, help="OMP_NUM_THREADS of the embedded studio")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from tests.helpers.tiny_framepack import save_tiny_pipeline

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        tmp = Path(tmp)
        base = {"FRAMEPACK_DIR": str(save_tiny_pipeline(tmp / "framepack"))}
        setups = [
            ("embedded", None),
            ("ray-1", [{"num_gpus": 1, "num_cpus": 2}]),
            ("ray-2", [{"num_gpus": 2, "num_cpus": 2}]),
        ]
        for name, nodes in setups:
            with contextlib.ExitStack() as stack:
                env = dict(base)
                if nodes is None:
                    # Ray gives each worker one compute thread (OMP_NUM_THREADS=1); the embedded
                    # studio gets the same, so the overhead compares like with like.
                    env["OMP_NUM_THREADS"] = str(args.embedded_threads)
                if nodes is not None:
                    cluster = stack.enter_context(ray_cluster(nodes))
                    env.update(ray_env(cluster))
                srv = stack.enter_context(StudioServer(tmp / name, env))
                if nodes is not None:
                    with httpx.Client(base_url=srv.url, timeout=60) as c:
                        wait_workers(c, int(nodes[0]["num_gpus"]))
                for engine in args.engines.split(","):
                    results.setdefault(engine, {})[name] = measure(srv, engine, args)
                    print(name, engine, json.dumps(results[engine][name]), flush=True)

    print(f"\none job of {args.images} images; {args.jobs} jobs of 3 images at once; one transition x{args.runs}")
    print("| engine | set-up | job wall s | vs ray-1 | jobs/hour | vs ray-1 | transition s | vs embedded |")
    print("|---|---|---|---|---|---|---|---|")
    for engine, rows in results.items():
        r1, emb = rows["ray-1"], rows["embedded"]
        for name, row in rows.items():
            print(
                f"| {engine} | {name} | {row['job_s']:.2f} | {r1['job_s'] / row['job_s']:.2f}x faster"
                f" | {row['jobs_per_hour']:.0f} | {row['jobs_per_hour'] / r1['jobs_per_hour']:.2f}x"
                f" | {row['transition_s']:.2f} | {row['transition_s'] / emb['transition_s']:.2f}x |"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
