"""A sampler's steps, sections and warnings as the studio's `Progress` records, for any engine.

Every denoising step is reported, so a cancel (the callback raising `JobCancelled`) stops the
sampler at its next step without the sampler polling a flag. A decoded section carries the
frames made so far (`preview_frames`), which the runner turns into the page's live preview.
"""

from __future__ import annotations

import numpy as np

from backend.utils.progress import Progress, ProgressCallback

STAGE = "generate"


class SamplingProgress:
    def __init__(self, progress: ProgressCallback, sections: int, steps: int) -> None:
        self.progress, self.sections, self.steps = progress, sections, steps

    def step(self, section: int, step: int) -> None:
        """Step `step` of section `section` (both 0-based, in generation order) is done."""
        sections, steps = self.sections, self.steps
        self.progress(
            Progress(
                STAGE,
                (section + (step + 1) / steps) / sections,
                f"section {section + 1}/{sections}, step {step + 1}/{steps}",
                {"section": section + 1, "sections": sections, "step": step + 1, "steps": steps},
            )
        )

    def section(self, done: int, frames: np.ndarray) -> None:
        """`done` sections are decoded; `frames` are all frames so far (uint8)."""
        sections, steps = self.sections, self.steps
        self.progress(
            Progress(
                STAGE,
                done / sections,
                f"section {done}/{sections} decoded",
                {"section": done, "sections": sections, "step": steps, "steps": steps, "preview_frames": frames},
            )
        )

    def warning(self, message: str) -> None:
        """A sentence for the job's warnings (already in both languages)."""
        self.progress(Progress(STAGE, 0.0, message, {"warning": message}))
