"""Speed levers for the FramePack transformer on CUDA: regional compile and (opt-in) FP8 matmuls.

Regional compile compiles each of the 60 transformer blocks rather than the whole model: the
blocks share code, so inductor compiles one dual-stream and one single-stream block and reuses
them (about 30 s instead of minutes), and the model's Python-level packing of history latents
stays eager (the engine-neutral half is `pipeline/regional_compile.py`). `dynamic=True` makes one compile serve every prompt length and resolution bucket,
so a new prompt never recompiles in the middle of a job. Inductor's on-disk cache
(TORCHINDUCTOR_CACHE_DIR) makes later processes skip most of the compile.

FP8 matmuls (Hopper/Ada, opt-in with STUDIO_FP8_MATMUL): each block's linear weights are stored
as float8 e4m3 with one scale per output channel; activations are quantised per token on the fly
and multiplied with `torch._scaled_mm` in bf16 output. This is NOT bit-identical to bf16: the
benchmark reports the transformer output's relative error against bf16 next to its speed.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from backend.pipeline.framepack.weight_storage import FP8_MAX, quantize_rows
from backend.pipeline.regional_compile import compile_available, eager, use_compile_cache

log = logging.getLogger(__name__)


def blocks(transformer) -> list[nn.Module]:
    # The modules themselves, also inside a forward whose loop a MagCache gates (`magcache.py`).
    lists = (transformer.transformer_blocks, transformer.single_transformer_blocks)
    return [block for group in lists for block in group._modules.values()]


def compile_blocks(transformer, dynamic: bool = True) -> int:
    """Compiles every transformer block in place; returns how many."""
    found = blocks(transformer)
    for block in found:
        block.compile(dynamic=dynamic)
    return len(found)


def eager_blocks(transformer):
    """Runs compiled blocks eagerly inside the block (the compiled code stays cached).

    The fp32 re-run of an overflowing section uses it (`compute_dtype.ComputePolicy`): its input
    dtype differs, and recompiling every block variant for one section costs more than it saves.
    (The fast mode's MagCache needs no eager blocks: it gates the model's loop over the blocks,
    outside the compiled code.)
    """
    return eager(blocks(transformer))


def fp8_matmul_supported() -> bool:
    if not torch.cuda.is_available() or not hasattr(torch, "_scaled_mm"):
        return False
    return torch.cuda.get_device_capability() >= (8, 9)


class Fp8Linear(nn.Linear):
    """A bf16-in, bf16-out linear layer whose weight is float8 e4m3 with per-output-channel scales.

    An `nn.Linear` (as `weight_storage.StoredLinear8` is) so the user's LoRAs sit beside it: PEFT
    wraps it and reads `compute_dtype` for the LoRA's dtype, and its `base_layer(x)` is this FP8
    matmul. What else hung on the replaced linear comes along: its forward hooks and their buffers
    (Wan's fast-mode LoRA, `wan/distill_lora.py`)."""

    def __init__(self, linear: nn.Linear) -> None:
        nn.Module.__init__(self)  # no nn.Linear init: it would allocate and initialise a weight
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.compute_dtype = torch.bfloat16
        weight_fp8, scale = quantize_rows(linear.weight)
        # Stored (out, in) row-major; `.t()` below is the column-major view _scaled_mm wants.
        self.weight = nn.Parameter(weight_fp8, requires_grad=False)
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out) float32
        self.bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)
        )
        for name, buffer in linear.named_buffers(recurse=False):
            self.register_buffer(name, buffer, persistent=False)
        # The same dicts: the hooks' handles still remove them.
        for table in ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
            setattr(self, table, getattr(linear, table))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        x_scale = x2.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX  # (tokens, 1)
        xq = (x2.float() / x_scale).to(torch.float8_e4m3fn)
        out = torch._scaled_mm(
            xq,
            self.weight.t(),
            scale_a=x_scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=torch.bfloat16,  # what row-wise scales allow on CUDA
        )
        # bf16 in the studio's GPU runs (a no-op); an fp32 model (CPU tests) gets fp32 back.
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8 matmul"


def convert_fp8_linears(transformer, min_features: int = 1024, within=None) -> int:
    """Swaps the large linear layers inside the blocks (FramePack's, or the modules `within`) for
    `Fp8Linear`; returns how many."""
    count = 0
    for block in blocks(transformer) if within is None else within:
        for _name, child in list(block.named_modules()):
            for attr, sub in list(child.named_children()):
                if (
                    type(sub) is nn.Linear
                    and sub.in_features >= min_features
                    and sub.out_features >= min_features
                    and sub.in_features % 16 == 0
                    and sub.out_features % 16 == 0
                ):
                    setattr(child, attr, Fp8Linear(sub))
                    count += 1
    torch.cuda.empty_cache()
    return count


__all__ = [
    "compile_blocks",
    "compile_available",
    "convert_fp8_linears",
    "fp8_matmul_supported",
    "use_compile_cache",
    "Fp8Linear",
]
