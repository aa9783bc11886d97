"""Joins a job's segments into one H.264 mp4.

Consecutive segments share a keyframe: segment i ends on image i+1 and segment i+1 starts on it.
The shared frame is written once — the copy that opens the next segment is kept, because it is
the decoded image itself (FramePack's start latent), while the end of a segment only approaches it.

`SegmentJoiner` takes segments as they are made, so a job that runs start to finish encodes its
video while it generates and never decodes its own segments again; `join_segments` rebuilds the
same file from segment files (a job resumed after an interruption). Frames stream through in
chunks; no segment is held whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from backend.utils.progress import Progress, ProgressCallback, ignore_progress
from backend.utils.video_io import VideoWriter, iter_frames, probe


def _metadata(metadata: dict | None) -> dict:
    return {k: (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in (metadata or {}).items()}


class SegmentJoiner:
    """Writes `output` from segments given in order; the file appears only when `finish` is called."""

    def __init__(self, output: Path, fps: float, crf: int, metadata: dict | None = None, loop: bool = False) -> None:
        self.output = output
        # A loop's last segment ends on the first image, which the player shows again when it
        # wraps: that last frame is not written, so the loop repeats no frame.
        self.loop = loop
        self._partial = output.with_name(output.stem + ".partial.mp4")
        self._writer = VideoWriter(self._partial, fps, crf=crf, metadata=_metadata(metadata))
        self._held: np.ndarray | None = None  # the last frame of the previous segment, maybe shared

    @property
    def frames(self) -> int:
        return self._writer.frames_written + (1 if self._held is not None else 0)

    def add(self, frames: np.ndarray, starts_segment: bool) -> None:
        """Adds frames of a segment; `starts_segment` marks the first chunk of each segment."""
        if len(frames) == 0:
            return
        if starts_segment:
            self._held = None  # the next segment's first frame replaces the shared one
        elif self._held is not None:
            self._writer.write(self._held)
        self._writer.write(frames[:-1])
        self._held = frames[-1:]

    def finish(self) -> int:
        if self._held is not None and not self.loop:
            self._writer.write(self._held)
            self._held = None
        self._writer.close()
        self._partial.replace(self.output)
        return self._writer.frames_written

    def abandon(self) -> None:
        self._writer.close()
        self._partial.unlink(missing_ok=True)


def join_segments(
    segments: list[Path],
    output: Path,
    fps: float,
    crf: int,
    metadata: dict | None = None,
    progress: ProgressCallback = ignore_progress,
    loop: bool = False,
) -> int:
    """Writes `output` from segment files; returns its frame count (sum − shared frames, − 1 for a
    loop's closing frame)."""
    if not segments:
        raise ValueError("nothing to join")
    total = sum(probe(path).frames for path in segments) - (len(segments) - 1)
    joiner = SegmentJoiner(output, fps, crf, metadata, loop=loop)
    try:
        for index, path in enumerate(segments):
            for n, chunk in enumerate(iter_frames(path, chunk_size=16)):
                joiner.add(chunk, starts_segment=(n == 0))
                progress(
                    Progress("join", min(1.0, joiner.frames / total), f"joining segment {index + 1}/{len(segments)}")
                )
        return joiner.finish()
    except BaseException:
        joiner.abandon()
        raise
