"""What scoring a take costs on this CPU, and the crafted-clip table of every score.

Cost: a 2.4 s 640x480 take at 30 fps (72 frames, a real photo panned 4 px/frame) is scored from
memory (`score_take`) and from its mp4 (`score_take_file`: decode + score, chunked); the reference
measured in the same run is decoding that mp4 alone, so the file figure reads as "n× a decode".
One seam (`score_seam_files`) is timed too. Median of `--runs`.

    .venv/bin/python benchmarks/scores_cost.py [--runs 3] [--table]

`--table` also prints each crafted clip of tests/helpers/crafted_clips.py with its scores and flags
(the same clips tests/test_scores.py checks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from backend.pipeline import scores  # noqa: E402
from backend.utils.video_io import iter_frames, write_video  # noqa: E402
from tests.helpers import crafted_clips as cc  # noqa: E402
from tests.helpers.photos import grace_hopper  # noqa: E402


def big_pan(n: int = 72, dx: int = 4) -> np.ndarray:
    photo = cv2.resize(grace_hopper(), (1024, 1200), interpolation=cv2.INTER_AREA)
    return np.stack([np.ascontiguousarray(photo[300:780, 40 + dx * i : 680 + dx * i]) for i in range(n)])


CPU_TIMES: dict[str, float] = {}


def timed(fn, runs: int, label: str = "") -> float:
    """Median wall seconds; the median CPU seconds of this process go to CPU_TIMES[label] (the
    machine may be shared, and CPU time is what scoring takes from others)."""
    times, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    CPU_TIMES[label] = statistics.median(cpu)
    return statistics.median(times)


def cost(runs: int) -> None:
    frames = big_pan()
    start, target = frames[0], frames[-1]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "take.mp4", frames, 30.0)
        half = len(frames) // 2
        path_a = write_video(Path(tmp) / "a.mp4", frames[: half + 1], 30.0)
        path_b = write_video(Path(tmp) / "b.mp4", frames[half:], 30.0)
        decode = timed(lambda: sum(len(c) for c in iter_frames(path, 16)), runs, "decode")
        memory = timed(lambda: scores.score_take(frames, start, target, 30.0), runs, "memory")
        from_file = timed(lambda: scores.score_take_file(path, start, target), runs, "file")
        seam = timed(lambda: scores.score_seam_files(path_a, path_b), runs, "seam")
    result = scores.score_take(frames, start, target, 30.0)
    print(f"cpu: {os.cpu_count()} cores, OpenCV threads {cv2.getNumThreads()}, load {os.getloadavg()[0]:.2f}")
    print(
        f"take: {len(frames)} frames 640x480 (2.4 s at 30 fps), scored at "
        f"{result.work_width}x{result.work_height}; median of {runs}"
    )
    c = CPU_TIMES
    print(f"decode mp4 alone (reference):    {decode:.3f} s wall, {c['decode']:.3f} s CPU")
    print(
        f"score_take (frames in memory):   {memory:.3f} s wall ({memory / len(frames) * 1000:.1f} ms/frame), "
        f"{c['memory']:.3f} s CPU"
    )
    print(
        f"score_take_file (decode+score):  {from_file:.3f} s wall ({from_file / decode:.1f}x the decode), "
        f"{c['file']:.3f} s CPU ({c['file'] / c['decode']:.1f}x)"
    )
    print(f"score_seam_files (one join):     {seam:.3f} s wall, {c['seam']:.3f} s CPU")
    print(f"pan of 4 px/frame measured as {result.motion.mean_speed_px} px/frame; overall {result.overall}")


def table() -> None:
    s, t = cc.start_image(), cc.target_image()
    takes = {
        "linear cross-fade": (cc.crossfade(), s, t),
        "ease-in cross-fade (t^3)": (cc.ease_in(), s, t),
        "cross-fade stopping at 60%": (cc.crossfade(until=0.6), s, t),
        "hold 66 frames, then jump": (cc.hold_then_jump(), s, t),
        "pan, cut at frame 36": (cc.with_cut(), s, t),
        "morph engine (flow dissolve)": (None, s, t),
        "pan 4 px/frame": (cc.pan(4.0), None, None),
        "sub-pixel pan 1.5 px/frame": (cc.subpixel_pan(1.5), None, None),
        "stutter pan 2/6 px/frame": (cc.stutter(), None, None),
        "cross-fade in the first third, then held": (cc.arrive_then_hold(), s, t),
        "held two thirds, then cross-fade": (cc.hold_then_arrive(), s, t),
        "pan 12 px/frame for a third, then held": (cc.pan_then_hold(), None, None),
        "still pair, held with grain": (cc.still_pair(), None, None),
    }
    from backend.pipeline.morph import morph_transition

    print(
        "| clip | overall | end SSIM | end ΔE | frame50 (t50) | frame90 | jump_share | speed px/f "
        "| jerk | cuts | held head/tail | flags |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (frames, start, target) in takes.items():
        if frames is None:
            frames = morph_transition(s, t, cc.N)
        start = frames[0] if start is None else start
        target = frames[-1] if target is None else target
        r = scores.score_take(frames, start, target, cc.FPS)
        a, m, h = r.arrival, r.motion, r.hold
        print(
            f"| {name} | {r.overall} | {r.end.ssim} | {r.end.delta_e} | {a.frame_50} ({a.t50}) | "
            f"{a.frame_90} | {a.jump_share} | {m.mean_speed_px} | {m.jerk} | "
            f"{list(m.cuts)} | {h.head_frames}/{h.tail_frames} | {', '.join(r.flags) or '-'} |"
        )
    print()
    print(
        "| seam | speed before/after px/f | direction cosine | motion change px | inside change px "
        "| change ratio | score | flags |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (a_frames, b_frames) in {
        "pan continues": cc.seam_takes(reverse=False),
        "pan reverses": cc.seam_takes(reverse=True),
        "takes do not meet": cc.seam_jump(),
    }.items():
        r = scores.score_seam(a_frames, b_frames, cc.FPS)
        print(
            f"| {name} | {r.speed_before_px}/{r.speed_after_px} | {r.direction_cosine} | "
            f"{r.motion_change_px} | {r.inside_change_px} | {r.change_ratio} | {r.score} | "
            f"{', '.join(r.flags) or '-'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    cost(args.runs)
    if args.table:
        print()
        table()


if __name__ == "__main__":
    main()
