"""Transformer weights stored in 8 bits, computed in bf16: half the bytes to hold and to move.

Used by the fp8 memory mode (the 13B transformer fits a 24 GB card resident) and by offload mode
on machines short of host RAM (12 GiB of 8-bit weights in host memory instead of 24 GiB of bf16,
and half the bytes over PCIe every step).

Each linear weight row (output channel) gets its own scale, so that its largest value maps to the
format's largest one. Two formats: float8 e4m3 (what the issue's "fp8 storage" names; a plain cast
as in diffusers' layerwise casting would push typical weights into e4m3's subnormal range) and
int8 (W8A16: 255 evenly spaced levels; for bell-shaped weight rows its rounding error is about a
third of e4m3's, whose 3-bit mantissa costs up to 6% of every value). The forward dequantises the
weight to the compute dtype and calls the ordinary bf16 matmul: inside a compiled block the
dequantisation is one fused elementwise kernel, so the speed stays near bf16 (cf.
`accel.Fp8Linear`, which also quantises the activations and multiplies in fp8).

Not bit-identical to bf16: `benchmarks/framepack_gpu.py --storage-error` reports the transformer
output's error against bf16 for both formats.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn
INT8_MAX = 127.0
# Small layers (norm modulations of tiny width, the timestep MLP input) are not worth a scale row.
MIN_WEIGHT_NUMEL = 1 << 16


def quantize_rows(weight: torch.Tensor, fmt: str = "fp8") -> tuple[torch.Tensor, torch.Tensor]:
    """(8-bit weight, float32 scale of shape (out, 1)) with weight ≈ q.float() * scale."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    if fmt == "fp8":
        scale = amax / FP8_MAX
        return (w / scale).to(FP8), scale
    if fmt == "int8":
        scale = amax / INT8_MAX
        return torch.round(w / scale).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), scale
    raise ValueError(f"unknown 8-bit format {fmt!r}")


class StoredLinear8(nn.Linear):
    """An `nn.Linear` (so offloading hooks treat it as one) whose weight lives in 8 bits.

    `weight` holds the fp8 or int8 values, `weight_scale` one float32 scale per output channel;
    the bias stays in the compute dtype.
    """

    def __init__(self, linear: nn.Linear, fmt: str = "fp8", compute_dtype: torch.dtype | None = None) -> None:
        nn.Module.__init__(self)  # no nn.Linear init: it would allocate and initialise a weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = compute_dtype or linear.weight.dtype
        self.fmt = fmt
        q, scale = quantize_rows(linear.weight, fmt)
        self.weight = nn.Parameter(q, requires_grad=False)
        self.weight_scale = nn.Parameter(scale, requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(
            linear.bias.detach().to(self.compute_dtype), requires_grad=False)

    def dequantized_weight(self) -> torch.Tensor:
        return (self.weight.float() * self.weight_scale).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, storage={self.fmt}"


def store_linears_8bit(module: nn.Module, fmt: str = "fp8", work_device: torch.device | str | None = None,
                      min_numel: int = MIN_WEIGHT_NUMEL) -> tuple[int, int]:
    """Replaces the large `nn.Linear` layers of `module` with `StoredLinear8`, in place.

    Each layer is quantised on `work_device` (a GPU does 13B weights in seconds; a CPU takes
    minutes) and the result goes back to where the layer was, so peak memory is the model plus one
    layer. Returns (layers converted, bytes saved).
    """
    count = saved = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child.weight.numel() < min_numel:
                continue
            home = child.weight.device
            before = child.weight.numel() * child.weight.element_size()
            if work_device is not None:
                child.to(work_device)
            stored = StoredLinear8(child, fmt).to(home)
            setattr(parent, name, stored)
            del child
            count += 1
            saved += before - stored.weight.numel() - stored.weight_scale.numel() * 4
    return count, saved


__all__ = ["StoredLinear8", "quantize_rows", "store_linears_8bit", "FP8_MAX"]
