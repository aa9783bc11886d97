"""How the FramePack transformer computes: bf16, fp16 with an fp32 residual stream, or fp32.

- bf16 (GPUs of compute capability >= 8.0): weights and activations in bf16, as before.
- fp16 (Turing: T4, RTX 20xx, which have no bf16 and fail to build bf16 kernels): weights in
  fp16 (or 8-bit, dequantised to fp16), every matmul in fp16 under autocast, and the residual
  stream in fp32: the outputs of the embedders that start the stream are cast to fp32, so each
  block's `x + gate * f(x)` adds an fp16 update to an fp32 sum. The stream is what grows past
  fp16's 65504 over 60 blocks; norm statistics and softmax run in fp32 under autocast anyway.
- fp32 (the safe fallback, and the overflow guard's re-run): activations in fp32, each weight
  cast up to fp32 as its op runs (`UpcastWeights`), so the weights keep their stored size.

`ComputePolicy` carries one of these to the sampling loop: the dtype of the transformer's
inputs, a context to run each forward in, and the safer policy to re-run a section in when its
latents come out inf or NaN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}

# The modules whose outputs start FramePack's residual streams (image tokens, clean-history
# tokens, text tokens, the SigLIP image tokens joined to the text).
STREAM_STARTS = ("x_embedder", "clean_x_embedder", "context_embedder", "image_projection")


def _to_fp32(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    if isinstance(value, tuple):
        return tuple(_to_fp32(v) for v in value)
    if isinstance(value, list):
        return [_to_fp32(v) for v in value]
    return value


def keep_stream_fp32(transformer) -> list:
    """Hooks that cast the residual stream's starting tensors to fp32; returns the handles."""
    handles = []
    for name in STREAM_STARTS:
        module = getattr(transformer, name, None)
        if module is not None:
            handles.append(module.register_forward_hook(lambda m, args, out: _to_fp32(out)))
    return handles


_WEIGHTED = {
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.layer_norm,
    F.group_norm,
    F.scaled_dot_product_attention,
    torch.matmul,
    torch.bmm,
    torch.baddbmm,
    torch.addmm,
    torch.mm,
    F.rms_norm,
}


class UpcastWeights(TorchFunctionMode):
    """Runs weighted ops in the widest floating dtype among their tensor arguments (fp32 inputs
    with fp16/bf16 weights: the weights are cast for that op only)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _WEIGHTED:
            floats = [
                a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()
            ]
            if floats and len({a.dtype for a in floats}) > 1:
                wide = max((a.dtype for a in floats), key=lambda d: torch.finfo(d).bits)

                def cast(a):
                    return a.to(wide) if isinstance(a, torch.Tensor) and a.is_floating_point() else a

                args = tuple(cast(a) for a in args)
                kwargs = {k: cast(v) for k, v in kwargs.items()}
        return func(*args, **kwargs)


class ComputePolicy:
    """One of bf16 / fp16 / fp32 for a device; `context()` wraps each transformer forward."""

    def __init__(
        self, name: str, device_type: str, eager: Callable[[], contextlib.AbstractContextManager] | None = None
    ):
        if name not in DTYPES:
            raise ValueError(f"unknown compute dtype {name!r}")
        self.name = name
        self.device_type = device_type
        self.input_dtype = DTYPES[name]
        self._eager = eager  # runs compiled blocks eagerly (the fp32 re-run is not compiled)

    def context(self) -> contextlib.AbstractContextManager:
        if self.name == "fp16":
            return torch.autocast(self.device_type, dtype=torch.float16)
        if self.name == "fp32":
            stack = contextlib.ExitStack()
            if self._eager is not None:
                stack.enter_context(self._eager())
            stack.enter_context(UpcastWeights())
            return stack
        return contextlib.nullcontext()

    def safer(self) -> ComputePolicy | None:
        return None if self.name == "fp32" else ComputePolicy("fp32", self.device_type, self._eager)

    def __repr__(self) -> str:
        return f"ComputePolicy({self.name!r})"


def low_precision_tensors(modules, dtype: torch.dtype = torch.bfloat16) -> list[str]:
    """Names of parameters and buffers in `dtype` (a Turing GPU must get none in bf16)."""
    found = []
    for label, module in modules:
        if module is None:
            continue
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.dtype == dtype:
                found.append(f"{label}.{name}")
    return found


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


__all__ = ["ComputePolicy", "UpcastWeights", "keep_stream_fp32", "low_precision_tensors", "finite", "DTYPES"]
