"""The Wan engine: first + last image transitions on diffusers' `WanImageToVideoPipeline` (Wan 2.1
FLF2V 14B, or Wan 2.2 I2V A14B's two experts: STUDIO_WAN_MODEL).

Loading and placing is `wan_loading.WanLoader`'s; one transition is `wan_sampling.sample_transition`'s. The
engine joins them behind the studio's engine interface (`pipeline/engines.TransitionEngine`):
describe, generate (loading on first use), release. The fast mode switches the distillation LoRA
on for its job only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from backend.contracts.errors import StudioError
from backend.pipeline.wan import wan_spec as spec
from backend.pipeline.wan.wan_loading import WanLoader
from backend.pipeline.wan.wan_sampling import sample_transition
from backend.utils.progress import ProgressCallback


class WanFastModeMissing(StudioError, RuntimeError):
    """A fast-mode job while the LoRA file is not on disk; the sentence names the fix."""


class WanEngine(WanLoader):
    name = spec.NAME

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
        """(frames, H, W, 3) uint8 from `first` to `last`, frames = 4k+1 ≤ 81 at 16 fps."""
        self.load(progress)
        fast = bool(params.get("fast"))
        if fast and self.lora is None:
            from backend.utils.model_registry import setup_fix_command, wan_lora_missing, wan_lora_path, wan_model

            missing = wan_lora_missing(self.settings) or [wan_lora_path(self.settings)]
            raise WanFastModeMissing(
                "wan_fast_lora_missing",
                path=", ".join(str(p) for p in missing),
                fix=setup_fix_command(self.settings, wan_model(self.settings).group),
            )
        # This take's own LoRAs, or none; with compiled blocks fused into the weights where possible.
        branch = self.loras.use(self.pipe, segment.get("loras"), compiled=self.compiled)
        if self.lora is not None:
            self.lora.enabled = fast
        try:
            with self.eager_blocks() if branch else contextlib.nullcontext():
                return sample_transition(self.pipe, first, last, prompt, segment, params, progress, keyframes)
        finally:
            if self.lora is not None:
                self.lora.enabled = False
