"""Device → host copies of finished frames through a reused page-locked buffer.

Pageable copies of large uint8 frames ran at a fraction of the bus speed and bounded the
upscaler and RIFE on an H100; one pinned buffer per stage, grown when needed, removes that.
"""

from __future__ import annotations

import numpy as np
import torch


class HostStaging:
    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def to_numpy(self, tensor: torch.Tensor) -> np.ndarray:
        """A numpy view of `tensor` (dense) on the host; valid until the next call."""
        if tensor.device.type != "cuda":
            return tensor.numpy()
        if self._buffer is None or self._buffer.numel() < tensor.numel():
            self._buffer = torch.empty(tensor.numel(), dtype=torch.uint8, pin_memory=True)
        view = self._buffer[: tensor.numel()].view(tensor.shape)
        view.copy_(tensor)
        return view.numpy()
