"""Peak host RAM of the post-processing chain: bounded by chunk size, not by video length.

Runs `run_postprocess` (upscale x4 with the compact model + RIFE 2x, random-init weights of the
real architectures) in a fresh subprocess per case and prints each child's peak RSS. Videos of
different lengths with the same chunk size should show the same peak; a larger chunk a larger one.

    .venv/bin/python benchmarks/post_memory.py [--size 160x120] [--lengths 30,240] [--chunks 4,16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys
from pathlib import Path
from backend.pipeline.postprocess import run_postprocess
from tests.helpers.postprocess import make_settings
root, src, chunk = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
settings = make_settings(root, post_chunk_frames=chunk)
report = run_postprocess(src, root / "out.mp4", {"mode": "manual", "upscale": 4, "interpolate": 2,
                         "upscale_model": "realesr-animevideov3"}, settings, lambda p: None)
print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "output": report["output"], "seconds": report["seconds"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--lengths", default="30,240")
    parser.add_argument("--chunks", default="4,16")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    from backend.utils.video_io import VideoWriter
    from tests.helpers.postprocess import make_settings, save_rife, save_upscaler, smooth_frames

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = make_settings(root)
        save_rife(settings)
        save_upscaler(settings, "realesr-animevideov3")
        base = smooth_frames(30, h, w, shift=2)
        print(f"input {w}x{h} @30fps -> x4 upscale + 2x RIFE ({4 * w}x{4 * h} @60fps)")
        print(f"{'frames':>7s} {'chunk':>6s} {'out frames':>10s} {'peak RSS MiB':>13s} {'seconds':>8s}")
        for length in (int(v) for v in args.lengths.split(",")):
            src = root / f"in_{length}.mp4"
            with VideoWriter(src, 30) as writer:  # written in pieces: the benchmark itself streams too
                for i in range(0, length, 30):
                    writer.write(base[: min(30, length - i)])
            for chunk in (int(v) for v in args.chunks.split(",")):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(root), str(src), str(chunk)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"{length:7d} {chunk:6d} {result['output']['frames']:10d} "
                    f"{result['peak_rss_mib']:13.0f} {result['seconds']:8.1f}"
                )


if __name__ == "__main__":
    main()
