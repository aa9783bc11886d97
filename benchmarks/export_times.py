"""How long each export takes on this machine, from a 10 s 640x640 30 fps H.264 video.

Writes the source once (smooth gradients, a moving disc and fine texture, so the codecs have real
work), then runs each format through `backend.pipeline.export_encoding.run` exactly as the export thread
does, with the API's defaults (GIF: 480 px, 15 fps; the others: the video's size and rate), and
prints seconds per format, the frames written and the file size. One export at a time, one process.

    .venv/bin/python benchmarks/export_times.py [--seconds 10] [--size 640] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from backend.jobs.export_service import GIF_DEFAULT_FPS, GIF_DEFAULT_WIDTH  # noqa: E402
from backend.pipeline import export_encoding as exports  # noqa: E402
from backend.utils.video_io import VideoWriter, probe  # noqa: E402

FORMATS = ("webm", "gif", "frames_zip", "frame_png", "pingpong_mp4")


def make_source(path: Path, seconds: float, size: int, fps: float = 30.0) -> None:
    rng = np.random.default_rng(0)
    # Fine texture at a quarter of the resolution (as camera detail after H.264), not per-pixel noise.
    texture = rng.integers(0, 24, (size // 4, size // 4, 1), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    with VideoWriter(path, fps, crf=18) as writer:
        for i in range(round(seconds * fps)):
            t = i / (seconds * fps)
            frame = np.empty((size, size, 3), np.float32)
            frame[..., 0] = 255 * (0.5 + 0.5 * np.sin(6.28 * (xx + t)))
            frame[..., 1] = 255 * yy
            frame[..., 2] = 255 * (1 - t) * xx
            cx, cy = 0.2 + 0.6 * t, 0.5 + 0.3 * np.sin(6.28 * t)
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < 0.02] = (250, 240, 60)
            writer.write(np.clip(frame + texture, 0, 255).astype(np.uint8))


def plan_for(fmt: str, source: Path, target: Path) -> exports.ExportPlan:
    info = probe(source)
    gif = fmt == "gif"
    width = min(info.width, GIF_DEFAULT_WIDTH) if gif else info.width
    w, h = exports.scaled_size(info.width, info.height, width, even=fmt in ("webm", "pingpong_mp4"))
    return exports.ExportPlan(
        format=fmt,
        source=source,
        target=target,
        width=w,
        height=h,
        source_fps=info.fps,
        fps=min(info.fps, GIF_DEFAULT_FPS) if gif else info.fps,
        source_frames=info.frames,
        frame=info.frames - 1 if fmt == "frame_png" else None,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--formats", default=",".join(FORMATS))
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source.mp4"
        make_source(source, args.seconds, args.size)
        info = probe(source)
        load = os.getloadavg()[0]
        print(
            f"source: {info.width}x{info.height}, {info.frames} frames at {info.fps:g} fps; "
            f"cpus {os.cpu_count()}, load average {load:.1f}"
        )
        print(f"{'format':<14} {'seconds':>8} {'frames':>7} {'size':>10} {'out WxH@fps':>16}")
        for fmt in args.formats.split(","):
            times = []
            for r in range(args.repeats):
                plan = plan_for(fmt, source, Path(tmp) / f"out-{r}{exports.EXTENSIONS[fmt]}")
                start = time.perf_counter()
                result = exports.run(plan)
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            results[fmt] = seconds
            shape = (
                f"{result.width}x{result.height}@{result.fps:g}" if result.fps else f"{result.width}x{result.height}"
            )
            print(f"{fmt:<14} {seconds:>8.2f} {result.frames:>7} {result.bytes / 1e6:>8.2f}MB {shape:>16}")
    return results


if __name__ == "__main__":
    main()
