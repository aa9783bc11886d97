"""STUDIO_FP8_MATMUL swaps a block's linears for `accel.Fp8Linear`: a layer that carries Wan's
fast-mode LoRA (a forward hook and its A/B buffers, `wan/distill_lora.py`) must keep it, switchable
and removable as before. Real `torch._scaled_mm` (PyTorch runs it on the CPU too)."""

from __future__ import annotations

import torch
from torch import nn

from backend.pipeline.framepack.accel import Fp8Linear, convert_fp8_linears
from backend.pipeline.wan.distill_lora import DistillLora


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_the_fast_mode_hook_moves_onto_the_fp8_layer_and_still_switches_and_comes_off():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(64, 48)).to(torch.bfloat16)
    linear = block[0]
    lora = DistillLora()
    a, b = torch.randn(4, 64) * 0.1, torch.randn(48, 4) * 0.5
    lora._hook(linear, {"A.weight": a, "B.weight": b, "B.bias": torch.randn(48) * 0.1})
    lora.layers = 1
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        plain = linear(x)
        lora.enabled = True
        hooked = linear(x)
        lora.enabled = False
        assert _rel(hooked, plain) > 0.1  # the LoRA changes this layer's output clearly

        assert convert_fp8_linears(None, min_features=16, within=[block]) == 1
        fp8 = block[0]
        assert isinstance(fp8, Fp8Linear) and fp8.studio_lora_A.shape == (4, 64)
        off = fp8(x)
        lora.enabled = True
        on = fp8(x)
        assert _rel(off, plain) < 0.05  # FP8 rounding only
        assert _rel(on, hooked) < 0.05  # the same hook, on the FP8 layer
        assert _rel(on, off) > 0.1
        lora.detach()  # the handles remove the hook from the new layer too
        assert not fp8._forward_hooks
        assert torch.equal(fp8(x), off)


def test_a_hook_attached_after_the_swap_computes_in_bf16_not_in_8_bits():
    torch.manual_seed(1)
    fp8 = Fp8Linear(nn.Linear(32, 16).to(torch.bfloat16))
    lora = DistillLora()
    lora._hook(fp8, {"A.weight": torch.randn(2, 32), "B.weight": torch.randn(16, 2)})
    assert fp8.studio_lora_A.dtype == fp8.studio_lora_B.dtype == torch.bfloat16
    x = torch.randn(3, 32, dtype=torch.bfloat16)
    with torch.no_grad():
        off = fp8(x)
        lora.enabled = True
        assert _rel(fp8(x), off) > 0.1
