"""The FramePack engine: first + last image transitions on diffusers' FramePack models.

Loading and placing the parts is `loading.FramePackLoader`'s; sampling one transition with them is
`sampling.sample_transition`'s. The engine joins the two behind the studio's engine interface
(`pipeline/engines.TransitionEngine`): describe, generate (loading on first use), release.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from backend.pipeline.framepack.loading import FramePackLoader
from backend.pipeline.framepack.sampling import check_bucket, sample_transition, step_cache_for
from backend.pipeline.framepack.spec import SPEC
from backend.utils.config import Settings
from backend.utils.progress import ProgressCallback


class FramePackEngine(FramePackLoader):
    name = "framepack"
    spec = SPEC

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.last_cache = None  # the last job's MagCache (its skipped steps per section), if any

    @property
    def overlap_decode(self) -> bool:
        """Decode each section while the next denoises: on a GPU that holds the whole model, where
        a decode fits beside a step; a streamed plan keeps its VRAM for the blocks."""
        return self.device == "cuda" and self.memory_mode == "resident"

    def generate(
        self,
        first: np.ndarray,
        last: np.ndarray,
        prompt: str,
        segment: dict,
        params: dict,
        progress: ProgressCallback,
        keyframes: Sequence[np.ndarray] = (),
    ) -> np.ndarray:
        """(n, H, W, 3) uint8 frames from `first` to `last`, n = sections × 4 × window + 1."""
        self.load(progress)
        height, width = first.shape[:2]
        check_bucket(self.plan, self.device, height, width)
        # This take's LoRAs, or none; with compiled blocks fused into the weights where possible.
        branch = self.loras.use(self.pipe, segment.get("loras"), compiled=self.compiled)
        self.last_cache = step_cache_for(params)
        # LoRAs beside the layers run the blocks eagerly: compiled, every adapter switch would recompile.
        eager = self._eager_blocks() if self.compiled and branch else contextlib.nullcontext()
        with eager:
            return sample_transition(
                self.pipe,
                first,
                last,
                prompt,
                segment,
                params,
                progress,
                device=self.device,
                policy=self.policy,
                placement=self.placement,
                step_cache=self.last_cache,
                overlap_decode=self.overlap_decode,
                keyframes=keyframes,
            )
