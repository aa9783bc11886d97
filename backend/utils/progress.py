"""The one progress type every pipeline stage reports through.

A stage receives a `ProgressCallback` and calls it with `Progress` records. The callback may raise
`JobCancelled` to stop the stage at its next report: stages report often (every denoising step,
every chunk of frames), so a cancel lands quickly without any stage polling a flag of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class JobCancelled(Exception):
    """Raised from a progress callback to stop the running stage."""


@dataclass(frozen=True)
class Progress:
    stage: str  # "generate", "join", "face_restore", "upscale", "interpolate", "encode", ...
    fraction: float  # 0..1 within this stage
    message: str = ""
    # Stage-specific fields: segment, section, step, total_steps, preview_path, ...
    detail: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    """A callback for running a stage alone when nobody listens."""
