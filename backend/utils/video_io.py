"""Every video read and write of the studio, through PyAV (it bundles FFmpeg with libx264).

Frames are numpy uint8 RGB arrays shaped (n, H, W, 3) (a single (H, W, 3) frame is accepted where a
chunk is). Readers yield chunks so that no caller has to hold a whole video in memory.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int
    metadata: dict

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


def tag_values(metadata: dict | None) -> dict[str, str]:
    """Container tags as text: a dict or list becomes JSON (never Python's repr), so a reader can
    parse what the studio wrote whichever writer wrote it."""
    return {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in (metadata or {}).items()}


def read_tags(data: bytes) -> dict[str, str]:
    """The container tags of a video held in memory (a whole file or its start: the studio writes
    with `+faststart`, so its tags come first). Raises ValueError when it is no video PyAV reads."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            if container.format.name == "image2" or container.format.name.endswith("_pipe"):
                raise ValueError(f"a still image ({container.format.name}), not a video")
            return {str(k): str(v) for k, v in container.metadata.items()}
    except av.error.FFmpegError as exc:
        raise ValueError(str(exc)) from exc


def probe(path: Path | str) -> VideoInfo:
    """Size, rate, exact frame count (counted by demuxing, not guessed) and container metadata."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        frames = sum(1 for packet in container.demux(stream) if packet.size)
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            frames=frames,
            metadata=dict(container.metadata),
        )


def iter_frames(path: Path | str, chunk_size: int = 16) -> Iterator[np.ndarray]:
    """Decodes a video into RGB chunks of at most `chunk_size` frames."""
    chunk: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            chunk.append(frame.to_ndarray(format="rgb24"))
            if len(chunk) == chunk_size:
                yield np.stack(chunk)
                chunk = []
    if chunk:
        yield np.stack(chunk)


def read_frames(path: Path | str) -> np.ndarray:
    """The whole video at once: only for short clips (segments, tests)."""
    chunks = list(iter_frames(path, chunk_size=64))
    return np.concatenate(chunks) if chunks else np.zeros((0, 0, 0, 3), np.uint8)


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """H.264 mp4 writer: yuv420p, `+faststart` so browsers can play it while it downloads.

    The size is taken from the first frame. yuv420p needs even sizes; odd frames are padded by one
    edge row/column (replicated) rather than rejected, because upscalers and crops can produce them.
    """

    def __init__(
        self,
        path: Path | str,
        fps: float,
        crf: int = 16,
        metadata: dict | None = None,
        preset: str = "medium",
        pix_fmt: str = "yuv420p",
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.crf = int(crf)
        self.metadata = tag_values(metadata)
        self.preset = preset
        self.pix_fmt = pix_fmt
        self.frames_written = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _open(self, height: int, width: int) -> tuple[av.container.OutputContainer, av.video.stream.VideoStream]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self.path), mode="w", options={"movflags": "+faststart+use_metadata_tags"})
        for key, value in self.metadata.items():
            container.metadata[key] = value
        stream = container.add_stream("libx264", rate=_rate(self.fps))
        stream.width = width + (width % 2)
        stream.height = height + (height % 2)
        stream.pix_fmt = self.pix_fmt
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        # x264's own frame threads, whose output x264 keeps the same run after run; PyAV's default
        # (slice threads) gave two encodes of the same frames that decode differently.
        stream.codec_context.thread_type = "FRAME"
        return container, stream

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames (n, H, W, 3), got {frames.dtype} {frames.shape}")
        if self._container is None or self._stream is None:
            self._container, self._stream = self._open(frames.shape[1], frames.shape[2])
        container, stream = self._container, self._stream
        pad_h, pad_w = stream.height - frames.shape[1], stream.width - frames.shape[2]
        if pad_h < 0 or pad_w < 0 or pad_h > 1 or pad_w > 1:
            raise ValueError(
                f"frame size {frames.shape[2]}x{frames.shape[1]} differs from the video's "
                f"{stream.width}x{stream.height}"
            )
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(video_frame):
                container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        if self._container is None or self._stream is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None


def write_video(path: Path | str, frames: np.ndarray, fps: float, crf: int = 16, metadata: dict | None = None) -> Path:
    with VideoWriter(path, fps, crf=crf, metadata=metadata) as writer:
        writer.write(frames)
    return Path(path)


def copy_with_metadata(src: Path | str, dst: Path | str, metadata: dict) -> Path:
    """`src` into `dst` with these container tags added, its packets copied as they are (no
    re-encode): tags known only once a file is written (its score) cost a remux, not a quality step."""
    with av.open(str(src)) as inp:
        tags = {**dict(inp.metadata), **tag_values(metadata)}
        with av.open(str(dst), mode="w", options={"movflags": "+faststart+use_metadata_tags"}) as out:
            for key, value in tags.items():
                out.metadata[key] = value
            source = inp.streams.video[0]
            target = out.add_stream_from_template(source)
            for packet in inp.demux(source):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = target
                out.mux(packet)
    return Path(dst)
