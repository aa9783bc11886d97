"""Frame interpolation with RIFE (our IFNet, Practical-RIFE 4.25/4.26 weights).

Streams: `process(chunk)` returns the frames that are final so far and keeps the chunk's last
frame to pair with the next chunk, so a video of n frames gives factor*(n-1)+1 frames whatever
the chunking. The network takes the timestep as input, so for 4x the three in-between frames of
a pair are three batch entries of one pass, not a 2x of a 2x. Pairs across a hard cut are not
blended: the in-between frames repeat the nearer original.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from backend.pipeline.host_copy import HostStaging
from backend.pipeline.rife_ifnet import PAD_MULTIPLE, IFNet, load_ifnet
from backend.utils.progress import Progress, ProgressCallback, ignore_progress


def scene_change_scores(frames: np.ndarray) -> np.ndarray:
    """Mean absolute grey difference (0..1) between consecutive frames, on 64-px thumbnails."""
    if len(frames) < 2:
        return np.zeros(0, np.float32)
    h, w = frames.shape[1:3]
    size = (64, max(1, round(64 * h / w)))
    # Every n-th pixel first: area-averaging whole HD frames cost a third of RIFE's time on an H100.
    n = max(1, min(h, w) // 256)
    thumbs = (
        np.stack(
            [
                cv2.resize(
                    cv2.cvtColor(np.ascontiguousarray(f[::n, ::n]), cv2.COLOR_RGB2GRAY),
                    size,
                    interpolation=cv2.INTER_AREA,
                )
                for f in frames
            ]
        ).astype(np.float32)
        / 255.0
    )
    return np.abs(np.diff(thumbs, axis=0)).mean(axis=(1, 2))


class RifeInterpolator:
    def __init__(
        self,
        model: IFNet,
        factor: int,
        device: torch.device | str = "cpu",
        half: bool = False,
        scene_threshold: float = 0.12,
        batch_size: int = 8,
    ) -> None:
        if factor not in (2, 4):
            raise ValueError(f"interpolation factor must be 2 or 4, got {factor}")
        self.device = torch.device(device)
        self.dtype = torch.float16 if half and self.device.type == "cuda" else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        self.factor = factor
        self.scene_threshold = scene_threshold
        self.batch_size = max(1, batch_size)
        self._last: np.ndarray | None = None  # final frame of the previous chunk
        self._staging = HostStaging()
        self.cuts = 0  # pairs left un-blended, for the report

    @classmethod
    def from_checkpoint(cls, path: Path, factor: int, **kwargs) -> RifeInterpolator:
        return cls(load_ifnet(path), factor, **kwargs)

    def output_count(self, n: int) -> int:
        return self.factor * (n - 1) + 1 if n else 0

    def process(self, chunk: np.ndarray, progress: ProgressCallback = ignore_progress) -> np.ndarray:
        """Takes the next (n,H,W,3) uint8 frames; returns the output frames they complete."""
        chunk = np.asarray(chunk)
        if chunk.ndim == 3:
            chunk = chunk[None]
        if len(chunk) == 0:
            return chunk
        first = self._last is None
        frames = chunk if first else np.concatenate([self._last[None], chunk])
        self._last = chunk[-1].copy()
        middles = self._interpolate_pairs(frames, progress)  # (pairs, factor-1, H, W, 3)
        out = [frames[:1]] if first else []
        for i in range(len(frames) - 1):
            out.append(middles[i])
            out.append(frames[i + 1 : i + 2])
        return np.concatenate(out) if out else frames[:0]

    @torch.inference_mode()
    def _interpolate_pairs(self, frames: np.ndarray, progress: ProgressCallback) -> np.ndarray:
        pairs = len(frames) - 1
        steps = self.factor - 1
        h, w = frames.shape[1:3]
        result = np.empty((pairs, steps, h, w, 3), np.uint8)
        if pairs == 0:
            return result
        cut = scene_change_scores(frames) > self.scene_threshold
        for i in np.flatnonzero(cut):
            # Hold: first half repeats the frame before the cut, second half the frame after.
            for k in range(steps):
                result[i, k] = frames[i] if (k + 1) / self.factor < 0.5 else frames[i + 1]
        self.cuts += int(cut.sum())

        jobs = [(i, k) for i in range(pairs) if not cut[i] for k in range(steps)]
        if not jobs:
            return result
        tensor = self._to_tensor(frames)  # (n,3,Hp,Wp) on device, padded
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start : start + self.batch_size]
            index0 = torch.tensor([i for i, _ in batch], device=self.device)
            t = torch.tensor([(k + 1) / self.factor for _, k in batch], device=self.device, dtype=self.dtype)
            mid = self.model(tensor[index0], tensor[index0 + 1], t)[:, :, :h, :w]
            mid = (mid.float().clamp_(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
            mid = self._staging.to_numpy(mid)
            for (i, k), frame in zip(batch, mid):
                result[i, k] = frame
            progress(
                Progress(
                    "interpolate",
                    min(1.0, (start + len(batch)) / len(jobs)),
                    f"RIFE {self.factor}x",
                    {"done": start + len(batch), "total": len(jobs)},
                )
            )
        return result

    def _to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
        h, w = x.shape[2:]
        ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x
