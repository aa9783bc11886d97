"""The fast mode's speed: MagCache at each threshold, at 25 steps and the quality slider's step counts.

MagCache's skip decisions follow from its calibration and the settings alone (never from the
data), so the forwards it skips, and hence its speed-up, are the same with random weights as with
the released ones; only the output error needs the real weights to mean anything (reported here
as the frames' difference from the uncached job, same seed, random weights).

For each step count and each setting (and the cache off) it runs one job through the studio's
`FramePackEngine` and prints: forwards skipped per section (from the cache's own record; a CPU
test checks it against the blocks actually run), s/section (host time from the job's start to each
section's preview, which syncs the device because the preview is copied to the host; no sync per
step), the speed-up against the cache off at the same steps, and the output error.

    # full-size random weights on a GPU (640², window 9, resident, compiled blocks)
    python benchmarks/magcache_speed.py --sections 1
    # tiny models of the same architecture on the CPU (CI keeps it working)
    python benchmarks/magcache_speed.py --tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (threshold, K: most skips in a row); retention 0.2 throughout, as the authors' FramePack settings.
# 0.10/3 and 0.15/4 are the two they published for FramePack; 0.15/4 is the studio's fast mode.
SETTINGS = ((0.06, 2), (0.10, 3), (0.15, 4), (0.25, 5))
STEPS = (25, 13, 10, 8)  # FramePack's default, and the fast mode's range on the quality slider


def run_job(gen, job: dict, clock, steps: int, sections: int, cache: str, prompt: str):
    """(frames, section end times from the job's start) of one job; no sync inside the steps."""

    ends: list[float] = []

    def progress(p) -> None:
        if "preview_frames" in p.detail:
            ends.append(clock.now())

    from benchmarks.framepack_gpu import engine_request

    segment, params = engine_request(job, sections, steps, cache)
    start = clock.now()
    frames = gen.generate(job["first"], job["last"], prompt, segment, params, progress)
    return frames, [e - start for e in ends]


def frame_error(frames, full) -> dict:
    from benchmarks.framepack_gpu import frame_difference

    d = frame_difference(frames, full)  # under the keys earlier results were written with
    return {
        "rel_l2_vs_full": d["rel_l2"],
        "max_abs_vs_full_0_255": d["max_abs"],
        "mean_abs_vs_full_0_255": d["mean_abs"],
    }


def grid(gen, job: dict, clock, steps_list=STEPS, settings=SETTINGS, sections: int = 1, prompt: str = "") -> dict:
    """Every step count × (off + each setting): skips per section, s/section, speed-up, error."""
    from backend.pipeline.framepack.magcache import MagCacheConfig, skip_pattern

    out: dict = {}
    for steps in steps_list:
        rows: dict = {}
        full, ends = run_job(gen, job, clock, steps, sections, "off", prompt)
        per_section = [b - a for a, b in zip([0.0] + ends, ends)]
        off_s = per_section[-1]
        rows["off"] = {
            "forwards_per_section": steps,
            "skipped_per_section": [0] * sections,
            "s_per_section": per_section,
            "first_section_s": ends[0],
            "total_s": ends[-1],
        }
        for threshold, k in settings:
            config = MagCacheConfig(threshold, k, 0.2)
            frames, ends = run_job(gen, job, clock, steps, sections, config.cache_value(), prompt)
            per_section = [b - a for a, b in zip([0.0] + ends, ends)]
            record = gen.last_cache.sections
            rows[config.cache_value()] = {
                "pattern": "".join("s" if s else "." for s in skip_pattern(steps, config)),
                "skipped_per_section": [len(s) for s in record],
                "forwards_per_section": [steps - len(s) for s in record],
                "s_per_section": per_section,
                "first_section_s": ends[0],
                "total_s": ends[-1],
                "speedup_per_section_vs_off": off_s / per_section[-1],
                **frame_error(frames, full),
            }
        out[str(steps)] = rows
    return out


def print_table(result: dict) -> None:
    print(f"{'steps':>5} {'cache':<22} {'skipped/section':>16} {'s/section':>10} {'speed-up':>9} {'rel L2':>8}")
    for steps, rows in result.items():
        for name, row in rows.items():
            skipped = row["skipped_per_section"]
            print(
                f"{steps:>5} {name:<22} {str(skipped[0]) + '/' + steps:>16} {row['s_per_section'][-1]:>10.3f} "
                f"{row.get('speedup_per_section_vs_off', 1.0):>8.2f}x {row.get('rel_l2_vs_full', 0.0):>8.4f}"
            )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny models of the same architecture, on the CPU")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument("--sections", type=int, default=2)
    ap.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    ap.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import platform

    import torch

    from backend.pipeline.framepack.engine import FramePackEngine
    from backend.utils.config import Settings
    from benchmarks.framepack_gpu import FULL, PROMPT, TINY, Clock, make_job
    from tests.helpers.framepack_models import build_pipeline

    cuda = not args.tiny and torch.cuda.is_available()
    spec = FULL if cuda else TINY
    size, window = (args.size, args.window) if cuda else (64, 3)
    device = "cuda" if cuda else "cpu"
    began = time.perf_counter()
    pipe = build_pipeline(spec, device, torch.bfloat16 if cuda else torch.float32, False)
    gen = FramePackEngine(
        Settings(
            gpu_profile="resident" if cuda else "auto",
            framepack_compile=args.compile,
            framepack_warmup=True,
            plan_bucket=size if cuda else 0,
            models_dir="/tmp/studio-bench-models",
        )
    )
    gen.attach(pipe, device, mode="resident" if cuda else "cpu")
    result = {
        "command": "python benchmarks/magcache_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "models": "full-size random" if cuda else "tiny",
        "size": size,
        "window": window,
        "sections": args.sections,
        "compiled": gen.compiled,
        "setup_s": time.perf_counter() - began,
    }
    job = make_job(size, window, args.sections, 1)
    clock = Clock(cuda)
    if cuda:  # the first job pays cuDNN/cuBLAS set-up
        run_job(gen, job, clock, 2, 1, "off", PROMPT)
    result["grid"] = grid(gen, job, clock, tuple(args.steps), SETTINGS, args.sections, PROMPT)
    print_table(result["grid"])
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
