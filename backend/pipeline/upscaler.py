"""Super-resolution with Real-ESRGAN (RRDB x4plus / x2plus, compact realesr-animevideov3).

Checkpoints are read with `torch.load(weights_only=True)` (or safetensors) and handed to
spandrel, which detects the architecture and loads the weights strictly. Frames are processed in
batches and in overlapping tiles: the model only ever sees `tile + 2*overlap` pixels per edge, and
each tile's result goes straight into a host-side uint8 canvas, so GPU memory does not grow with
the frame size. The overlap is cropped away (the model's receptive field at tile borders sees
real neighbours), which is what keeps tiled output equal to whole-frame output in the interior.

A ×2 request on a ×4 model resizes each tile's output by area-averaging on the device; a ×4
request on a ×2 model resizes it bicubically (documented choice: one network pass per frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.pipeline.host_copy import HostStaging
from backend.utils.progress import Progress, ProgressCallback, ignore_progress


def _registry():
    # A registry of our own instead of `spandrel_extra_arches.install()`, which would mutate
    # spandrel's process-wide MAIN_REGISTRY.
    from spandrel import MAIN_REGISTRY, ArchRegistry
    from spandrel_extra_arches import EXTRA_REGISTRY

    registry = ArchRegistry()
    registry.add(*MAIN_REGISTRY)
    registry.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return registry


def read_state_dict(path: Path) -> dict:
    """Tensors only: safetensors, or a pickle read with `weights_only=True`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_spandrel(path: Path, expected_arch: str | None = None):
    """A spandrel model descriptor for a checkpoint file (strict key loading inside spandrel)."""
    from spandrel import ModelLoader, canonicalize_state_dict

    state = canonicalize_state_dict(read_state_dict(path))
    descriptor = ModelLoader(registry=_registry()).load_from_state_dict(state)
    if expected_arch is not None and descriptor.architecture.id != expected_arch:
        raise ValueError(f"{Path(path).name} holds a {descriptor.architecture.id} model, expected {expected_arch}")
    return descriptor.eval()


class Upscaler:
    """Upscales uint8 RGB frames (n,H,W,3) by `out_scale` (2 or 4)."""

    def __init__(
        self,
        descriptor,
        out_scale: int,
        device: torch.device | str = "cpu",
        half: bool = False,
        tile: int = 256,
        overlap: int = 16,
        batch_size: int = 4,
    ) -> None:
        if out_scale not in (2, 4):
            raise ValueError(f"upscale factor must be 2 or 4, got {out_scale}")
        self.device = torch.device(device)
        use_half = half and self.device.type == "cuda" and getattr(descriptor, "supports_half", False)
        self.dtype = torch.float16 if use_half else torch.float32
        self.descriptor = descriptor.to(self.device)
        self.model = self.descriptor.model.to(self.dtype).eval()
        self.model_scale = int(descriptor.scale)
        self.out_scale = out_scale
        self.tile = int(tile)
        self.overlap = int(overlap)
        self.batch_size = max(1, batch_size)
        self._staging = HostStaging()
        # pixel-unshuffle models (x2plus) need inputs divisible by 4
        req = getattr(descriptor, "size_requirements", None)
        self.multiple = max(1, getattr(req, "multiple_of", 1) or 1)

    @classmethod
    def from_checkpoint(cls, path: Path, out_scale: int, **kwargs) -> Upscaler:
        return cls(load_spandrel(path), out_scale, **kwargs)

    def process(self, frames: np.ndarray, progress: ProgressCallback = ignore_progress) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        n, h, w, _ = frames.shape
        s = self.out_scale
        out = np.empty((n, h * s, w * s, 3), np.uint8)
        for start in range(0, n, self.batch_size):
            batch = frames[start : start + self.batch_size]
            self._upscale_batch(batch, out[start : start + len(batch)])
            progress(Progress("upscale", (start + len(batch)) / n, f"x{s}", {"done": start + len(batch), "total": n}))
        return out

    @torch.inference_mode()
    def _upscale_batch(self, batch: np.ndarray, out: np.ndarray) -> None:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        x = x.permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
        _, _, h, w = x.shape
        tile = self.tile if self.tile > 0 else max(h, w)
        s = self.out_scale
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                # the tile plus its overlap, clamped to the frame
                py0, px0 = max(0, y0 - self.overlap), max(0, x0 - self.overlap)
                py1, px1 = min(h, y1 + self.overlap), min(w, x1 + self.overlap)
                result = self._run(x[:, :, py0:py1, px0:px1])
                core = result[:, :, (y0 - py0) * s : (y1 - py0) * s, (x0 - px0) * s : (x1 - px0) * s]
                core = (core.float().clamp_(0, 1) * 255.0).round_().to(torch.uint8)
                # Channels-last on the device first, so the copy to the host is one dense block.
                out[:, y0 * s : y1 * s, x0 * s : x1 * s] = self._staging.to_numpy(core.permute(0, 2, 3, 1).contiguous())

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        y = self.model(x)[:, :, : h * self.model_scale, : w * self.model_scale]
        if self.model_scale == self.out_scale:
            return y
        if self.model_scale > self.out_scale:
            return F.avg_pool2d(y, self.model_scale // self.out_scale)
        return F.interpolate(y, scale_factor=self.out_scale / self.model_scale, mode="bicubic", align_corners=False)
