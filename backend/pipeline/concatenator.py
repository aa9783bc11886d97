"""Joins a job's segments into one H.264 mp4.

Consecutive segments share a keyframe: segment i ends on image i+1 and segment i+1 starts on it.
The shared frame is written once — the copy that opens the next segment is kept, because it is
the decoded image itself (FramePack's start latent), while the end of a segment only approaches it.
Frames stream through in chunks; no segment is held whole.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.pipeline.progress import Progress, ProgressCallback, ignore_progress
from backend.utils.video_io import VideoWriter, iter_frames, probe


def join_segments(
    segments: list[Path],
    output: Path,
    fps: float,
    crf: int,
    metadata: dict | None = None,
    progress: ProgressCallback = ignore_progress,
) -> int:
    """Writes `output`; returns its frame count (sum of segment frames − shared frames)."""
    if not segments:
        raise ValueError("nothing to join")
    counts = [probe(path).frames for path in segments]
    total = sum(counts) - (len(segments) - 1)
    meta = {k: (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in (metadata or {}).items()}
    tmp = output.with_name(output.stem + ".partial.mp4")
    written = 0
    with VideoWriter(tmp, fps, crf=crf, metadata=meta) as writer:
        for index, (path, count) in enumerate(zip(segments, counts)):
            keep = count if index == len(segments) - 1 else count - 1
            seen = 0
            for chunk in iter_frames(path, chunk_size=16):
                take = chunk[: max(0, keep - seen)]
                seen += len(chunk)
                if len(take):
                    writer.write(take)
                    written += len(take)
                    progress(Progress("join", written / total, f"joining segment {index + 1}/{len(segments)}"))
    tmp.replace(output)
    return written
