"""Exports of a stored video: WebM, GIF, every frame as PNG in a zip, one frame as PNG, a ping-pong
loop (mp4). Each reads the stored file with PyAV, frame by frame, and writes one file; nothing here
knows about jobs. Runs on an export thread, never on the event loop.

- Size: frames are scaled by FFmpeg's swscale (area averaging) to the planned width and height.
- Rate: a lower frame rate keeps the source frame nearest each output instant (no blending), so the
  duration stays the same.
- WebM: VP9 (libvpx-vp9, constant quality), yuv420p.
- GIF: PyAV's `gif` encoder; each frame gets its own 256-colour palette, chosen by Pillow (fast
  octree, no dithering, so a still background does not flicker).
- Ping-pong: the frames forwards, then backwards without repeating the two ends, so it loops
  without a pause; the forward frames wait in a memory-mapped file on disk, not in RAM.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from backend.utils.video_io import VideoWriter

EXTENSIONS = {"webm": ".webm", "gif": ".gif", "frames_zip": ".zip", "frame_png": ".png", "pingpong_mp4": ".mp4"}
WEBM_CRF = 32
PINGPONG_CRF = 18
ZIP_PNG_LEVEL = 1  # PNG is lossless at any level; 1 is several times faster than Pillow's default 6


@dataclass(frozen=True)
class ExportPlan:
    format: str
    source: Path
    target: Path
    width: int
    height: int
    source_fps: float
    fps: float
    source_frames: int
    frame: int | None = None  # frame_png: the 0-based frame


@dataclass(frozen=True)
class ExportResult:
    width: int
    height: int
    fps: float | None
    frames: int
    bytes: int


def scaled_size(src_w: int, src_h: int, width: int | None, even: bool) -> tuple[int, int]:
    """`width` (default the source's) and the height that keeps the aspect ratio; both even when the
    codec needs it (yuv420p)."""
    w = width or src_w
    h = max(1, round(src_h * w / src_w))
    if even:
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    return w, h


def output_indices(source_frames: int, source_fps: float, fps: float) -> list[int]:
    """The source frames an export at `fps` shows: the one nearest each output instant."""
    if source_frames <= 0:
        return []
    if fps >= source_fps:
        return list(range(source_frames))
    count = math.floor((source_frames - 1) * fps / source_fps + 1e-9) + 1
    return [min(source_frames - 1, round(k * source_fps / fps)) for k in range(count)]


def _frames(plan: ExportPlan, wanted: list[int]) -> Iterator[np.ndarray]:
    """Decodes the source and yields the wanted frames (in order, repeats allowed) at the plan's size."""
    if not wanted:
        return
    pos = 0
    with av.open(str(plan.source)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index < wanted[pos]:
                continue
            if (frame.width, frame.height) != (plan.width, plan.height):
                frame = frame.reformat(width=plan.width, height=plan.height, interpolation="AREA")
            rgb = frame.to_ndarray(format="rgb24")
            while pos < len(wanted) and wanted[pos] == index:
                yield rgb
                pos += 1
            if pos == len(wanted):
                return


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def _webm(plan: ExportPlan, wanted: list[int], tick: Callable[[], None]) -> int:
    written = 0
    with av.open(str(plan.target), mode="w", format="webm") as out:
        stream = out.add_stream("libvpx-vp9", rate=_rate(plan.fps))
        stream.width, stream.height, stream.pix_fmt = plan.width, plan.height, "yuv420p"
        # Realtime deadline at speed 8: about twice as fast as "good" at speed 5 on two cores.
        stream.options = {"crf": str(WEBM_CRF), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
        for rgb in _frames(plan, wanted):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
            written += 1
            tick()
        for packet in stream.encode():
            out.mux(packet)
    return written


def gif_frame(rgb: np.ndarray) -> av.VideoFrame:
    """One RGB frame as a pal8 frame with its own 256-colour palette (Pillow's fast octree)."""
    image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    colours = np.array(image.getpalette()[: 256 * 3], np.uint8).reshape(-1, 3)
    palette = np.zeros((256, 4), np.uint8)
    palette[:, 0] = 255  # PyAV reads each entry as A, R, G, B
    palette[: len(colours), 1:] = colours
    return av.VideoFrame.from_ndarray((np.asarray(image), palette), format="pal8")


def _gif(plan: ExportPlan, wanted: list[int], tick: Callable[[], None]) -> int:
    written = 0
    with av.open(str(plan.target), mode="w", format="gif") as out:
        stream = out.add_stream("gif", rate=_rate(plan.fps))
        stream.width, stream.height, stream.pix_fmt = plan.width, plan.height, "pal8"
        for rgb in _frames(plan, wanted):
            for packet in stream.encode(gif_frame(rgb)):
                out.mux(packet)
            written += 1
            tick()
        for packet in stream.encode():
            out.mux(packet)
    return written


def _png_bytes(rgb: np.ndarray, level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def _frames_zip(plan: ExportPlan, wanted: list[int], tick: Callable[[], None]) -> int:
    written = 0
    digits = max(5, len(str(len(wanted))))
    # PNG is compressed already: the zip stores the files as they are.
    with zipfile.ZipFile(plan.target, "w", compression=zipfile.ZIP_STORED) as archive:
        for rgb in _frames(plan, wanted):
            archive.writestr(f"frame_{written:0{digits}d}.png", _png_bytes(rgb, ZIP_PNG_LEVEL))
            written += 1
            tick()
    return written


def _frame_png(plan: ExportPlan, tick: Callable[[], None]) -> int:
    rgb = next(_frames(plan, [plan.frame or 0]), None)
    if rgb is None:
        raise ValueError(f"the video has no frame {plan.frame}")
    plan.target.write_bytes(_png_bytes(rgb, 6))
    tick()
    return 1


def _pingpong(plan: ExportPlan, wanted: list[int], tick: Callable[[], None]) -> int:
    spool = plan.target.with_name(plan.target.name + ".frames.npy")
    try:
        forward = np.lib.format.open_memmap(
            spool, mode="w+", dtype=np.uint8, shape=(len(wanted), plan.height, plan.width, 3)
        )
        count = 0
        with VideoWriter(plan.target, plan.fps, crf=PINGPONG_CRF, preset="veryfast") as writer:
            for rgb in _frames(plan, wanted):
                writer.write(rgb)
                forward[count] = rgb
                count += 1
                tick()
            for i in range(count - 2, 0, -1):  # back again, without either end twice
                writer.write(np.asarray(forward[i]))
                tick()
            written = writer.frames_written
        del forward
        return written
    finally:
        spool.unlink(missing_ok=True)


def run(plan: ExportPlan, progress: Callable[[float], None] | None = None) -> ExportResult:
    """Makes `plan.target` (written under a partial name, then renamed) and says what it holds."""
    wanted = output_indices(plan.source_frames, plan.source_fps, plan.fps)
    n = len(wanted)
    total = max(1, {"frame_png": 1, "pingpong_mp4": n + max(0, n - 2)}.get(plan.format, n))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(min(1.0, done / total))

    final = plan.target
    partial = final.with_name(".partial-" + final.name)
    work = ExportPlan(**{**plan.__dict__, "target": partial})
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        if plan.format == "webm":
            frames = _webm(work, wanted, tick)
        elif plan.format == "gif":
            frames = _gif(work, wanted, tick)
        elif plan.format == "frames_zip":
            frames = _frames_zip(work, wanted, tick)
        elif plan.format == "frame_png":
            frames = _frame_png(work, tick)
        elif plan.format == "pingpong_mp4":
            frames = _pingpong(work, wanted, tick)
        else:
            raise ValueError(f"unknown export format {plan.format!r}")
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    fps = None if plan.format == "frame_png" else plan.fps
    return ExportResult(width=plan.width, height=plan.height, fps=fps, frames=frames, bytes=final.stat().st_size)
