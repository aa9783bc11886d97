"""User LoRAs on the tiny FramePack of the real architecture (CPU), through the studio's engine.

Each key format changes the frames and gives what diffusers' own `load_lora_weights` +
`set_adapters` give on the same model; the kohya/musubi file's layers get exactly the deltas its
down/up/alpha tensors describe (an independent check of the added key rewrite); taking the LoRA
off gives back the frames of an engine that never had one, bit for bit; 8-bit weights and blocks
streamed from RAM and disk take LoRAs too; a corrupt or vanished file fails the take with its
sentence and leaves nothing behind.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import pytest
import torch

from backend.contracts.errors import StudioError
from backend.pipeline.framepack.engine import FramePackEngine
from backend.pipeline.framepack.memory import plan_for_mode
from backend.pipeline.framepack.weight_storage import store_linears_8bit
from backend.pipeline.loras import read_lora
from backend.utils.config import Settings
from tests.helpers import lora_formats
from tests.helpers.framepack_models import build_pipeline
from tests.helpers.tiny_framepack import TINY_SPEC

H, W = 64, 96
PARAMS = {"steps": 1, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
SEGMENT = {"sections": 1, "seed": 5, "end_embed_weights": [0.5]}
SPEC = copy.deepcopy(TINY_SPEC)
SPEC["transformer"].update(num_layers=2, num_single_layers=2)


def _pipe():
    return build_pipeline(SPEC, "cpu", torch.float32, seed=0)


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    t = _pipe().transformer
    lora_formats.diffusers_lora(t, lora_formats.FRAMEPACK_DIFFUSERS_MODULES, folder / "fp_diffusers.safetensors")
    lora_formats.kohya_hunyuan_lora(t, folder / "fp_kohya.safetensors", alpha=1.0)
    return folder


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(4)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _engine(lora_dir, tmp_path, pipe=None, plan=None) -> FramePackEngine:
    gen = FramePackEngine(Settings(framepack_compile="off", models_dir=tmp_path, lora_dir=lora_dir))
    if plan is None:
        gen.attach(pipe or _pipe(), "cpu", mode="cpu")
    else:
        gen.attach(pipe or _pipe(), "cpu", plan=plan)
    return gen


def _run(gen, images, loras=None):
    seg = {**SEGMENT, "loras": loras} if loras is not None else SEGMENT
    return gen.generate(*images, "a cat turns", seg, PARAMS, lambda p: None)


@pytest.fixture(scope="module")
def plain(lora_dir, images, tmp_path_factory):
    return _run(_engine(lora_dir, tmp_path_factory.mktemp("m")), images)


@pytest.mark.parametrize("name", ["fp_diffusers.safetensors", "fp_kohya.safetensors"])
def test_each_format_changes_the_frames_like_diffusers_own_path_and_comes_off_exactly(
    name, lora_dir, images, plain, tmp_path
):
    gen = _engine(lora_dir, tmp_path)
    with_lora = _run(gen, images, [{"name": name, "weight": 0.7}])
    assert not np.array_equal(with_lora, plain)
    # diffusers' own LoRA path on the same model: load_lora_weights + set_adapters.
    ref_pipe = _pipe()
    ref_pipe.load_lora_weights(read_lora(lora_dir / name), adapter_name="ref")
    ref_pipe.set_adapters(["ref"], [0.7])
    ref = _run(_engine(lora_dir, tmp_path / "ref", pipe=ref_pipe), images)
    assert np.array_equal(with_lora, ref)
    # Off again: the frames of an engine that never had a LoRA, bit for bit.
    assert np.array_equal(_run(gen, images, []), plain)
    assert np.array_equal(_run(gen, images), plain)


def test_kohya_layers_get_the_deltas_their_tensors_describe(lora_dir, tmp_path):
    from safetensors.torch import load_file

    gen = _engine(lora_dir, tmp_path)
    gen.load()
    gen.loras.use(gen.pipe, [{"name": "fp_kohya.safetensors", "weight": 1.0}])
    (adapter,) = gen.loras.loaded
    raw = load_file(str(lora_dir / "fp_kohya.safetensors"))
    inner = 16
    stem = "lora_unet_double_blocks_1_img_attn_qkv"
    down, up = raw[f"{stem}.lora_down.weight"], raw[f"{stem}.lora_up.weight"]
    scale = float(raw[f"{stem}.alpha"]) / down.shape[0]
    blocks = gen.pipe.transformer.transformer_blocks
    for i, proj in enumerate(("to_q", "to_k", "to_v")):
        layer = getattr(blocks[1].attn, proj)
        want = scale * up[i * inner : (i + 1) * inner] @ down
        torch.testing.assert_close(layer.get_delta_weight(adapter), want, rtol=1e-5, atol=1e-6)
    stem = "lora_unet_double_blocks_0_img_mlp_fc2"
    down, up = raw[f"{stem}.lora_down.weight"], raw[f"{stem}.lora_up.weight"]
    want = float(raw[f"{stem}.alpha"]) / down.shape[0] * up @ down
    torch.testing.assert_close(blocks[0].ff.net[2].get_delta_weight(adapter), want, rtol=1e-5, atol=1e-6)


def test_two_loras_with_weights_and_a_switch_that_rewrites_no_weights(lora_dir, images, plain, tmp_path):
    gen = _engine(lora_dir, tmp_path)
    both = [{"name": "fp_diffusers.safetensors", "weight": 0.5}, {"name": "fp_kohya.safetensors", "weight": -0.4}]
    first = _run(gen, images, both)
    base = {n: p.clone() for n, p in gen.pipe.transformer.named_parameters() if "lora_" not in n}
    one = _run(gen, images, both[:1])
    assert not np.array_equal(first, one) and not np.array_equal(one, plain)
    began = time.perf_counter()
    again = _run(gen, images, both)  # both loaded already: a switch, no read
    assert gen.loras.switch_seconds < time.perf_counter() - began
    assert np.array_equal(again, first)
    for n, p in gen.pipe.transformer.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base[n]), n  # the base weights were never rewritten
    assert len(gen.loras.loaded) == 2


def test_a_corrupt_or_vanished_lora_fails_the_take_and_leaves_nothing(lora_dir, images, plain, tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    good = folder / "good.safetensors"
    good.write_bytes((lora_dir / "fp_diffusers.safetensors").read_bytes())
    lora_formats.corrupt_copy(lora_dir / "fp_kohya.safetensors", folder / "bad.safetensors")
    gen = _engine(folder, tmp_path)
    with pytest.raises(StudioError) as caught:
        _run(gen, images, [{"name": "good.safetensors", "weight": 1.0}, {"name": "bad.safetensors", "weight": 1.0}])
    assert caught.value.code == "lora_failed" and "bad.safetensors" in caught.value.text("ko")
    assert np.array_equal(_run(gen, images), plain)
    good.unlink()
    with pytest.raises(StudioError) as caught:
        _run(gen, images, [{"name": "good.safetensors", "weight": 1.0}])
    assert caught.value.code == "lora_missing"
    assert np.array_equal(_run(gen, images), plain)


def _int8_storage(transformer) -> None:
    store_linears_8bit(transformer, "int8", min_numel=64)


def _fp8_matmul(transformer) -> None:
    from backend.pipeline.framepack import accel

    assert accel.convert_fp8_linears(transformer, min_features=16) > 0


@pytest.mark.parametrize(
    "convert, base_dtype, lora_dtype",
    [(_int8_storage, torch.int8, torch.float32), (_fp8_matmul, torch.float8_e4m3fn, torch.bfloat16)],
    ids=["8-bit weights", "fp8 matmuls"],
)
def test_8bit_layers_take_a_lora_and_give_it_back(convert, base_dtype, lora_dtype, lora_dir, images, tmp_path):
    """8-bit stored weights (`StoredLinear8`) and STUDIO_FP8_MATMUL's `Fp8Linear` are both
    `nn.Linear`s with a `compute_dtype`: PEFT puts the LoRA beside them (PyTorch runs `_scaled_mm`
    on the CPU too; the studio converts to FP8 matmuls only resident on an Ada/Hopper GPU)."""

    def pipe8():
        p = _pipe()
        convert(p.transformer)
        return p

    gen = _engine(lora_dir, tmp_path, pipe=pipe8())
    plain8 = _run(gen, images)
    loras = [{"name": "fp_diffusers.safetensors", "weight": 1.0}]
    with_lora = _run(gen, images, loras)
    assert not np.array_equal(with_lora, plain8)
    ref_pipe = pipe8()  # diffusers' own LoRA path on the same 8-bit layers
    ref_pipe.load_lora_weights(str(lora_dir / "fp_diffusers.safetensors"), adapter_name="ref")
    assert np.array_equal(_run(_engine(lora_dir, tmp_path / "r", pipe=ref_pipe), images), with_lora)
    assert np.array_equal(_run(gen, images, []), plain8)
    # The base layers kept their 8 bits; the LoRA computes in their compute dtype (FP8 matmuls: bf16).
    layer = gen.pipe.transformer.transformer_blocks[0].attn.to_q
    assert layer.base_layer.weight.dtype == base_dtype
    assert layer.lora_A[next(iter(layer.lora_A))].weight.dtype == lora_dtype


def test_blocks_streamed_from_ram_and_disk_take_a_lora(lora_dir, images, plain, tmp_path):
    base = plan_for_mode("offload", "bf16", text_on_disk=False, dtype="fp32")
    tiers = ("disk", "ram", "gpu", "disk")
    plan = dataclasses.replace(base, mode="partial", tiers=tiers, blocks_gpu=1, blocks_ram=1, blocks_disk=2)
    loras = [{"name": "fp_kohya.safetensors", "weight": 0.7}]
    want = _run(_engine(lora_dir, tmp_path / "resident"), images, loras)
    gen = _engine(lora_dir, tmp_path / "streamed", plan=plan)
    assert gen.placement.block_stream.tiers == list(tiers)
    assert np.array_equal(_run(gen, images, loras), want)
    assert np.array_equal(_run(gen, images, []), plain)


def _recording_compiled(gen, calls: list):
    """Stands in for torch.compile's entry on every block (the CPU test compiles nothing): a call
    through it is recorded. Returns the blocks."""
    from backend.pipeline.framepack import accel
    from backend.pipeline.framepack.compute_dtype import ComputePolicy

    blocks = accel.blocks(gen.pipe.transformer)

    def recording(block):
        def call(*args, **kwargs):
            calls.append(type(block).__name__)
            return block._call_impl(*args, **kwargs)

        return call

    for block in blocks:
        block._compiled_call_impl = recording(block)
    gen.compiled = True
    # The CPU's fp32 policy runs blocks eagerly (as the GPU's fp32 re-run of an overflow does); a
    # bf16-named policy on fp32 weights computes the same and leaves the blocks to the engine.
    gen.policy = ComputePolicy("bf16", "cpu", gen._eager_blocks)
    return blocks


def _fused_reference(lora_dir, tmp_path, choices, images):
    """diffusers' own fused path: load, set_adapters, fuse_lora, unload_lora_weights."""
    pipe = _pipe()
    for i, (name, _) in enumerate(choices):
        pipe.load_lora_weights(read_lora(lora_dir / name), adapter_name=f"ref{i}")
    pipe.set_adapters([f"ref{i}" for i in range(len(choices))], [w for _, w in choices])
    pipe.fuse_lora(components=["transformer"], adapter_names=[f"ref{i}" for i in range(len(choices))])
    pipe.unload_lora_weights()
    return _run(_engine(lora_dir, tmp_path, pipe=pipe), images)


def test_compiled_blocks_take_loras_fused_into_their_weights_and_get_them_back_bit_for_bit(
    lora_dir, images, plain, tmp_path
):
    """torch.compile guards on a block's modules: PEFT's layers would make the blocks run eagerly
    (1.44x a step on an H100). With compiled blocks the LoRAs are fused: the compiled blocks run the
    job, the frames are diffusers' own fuse_lora path's, and the next job gets the weights back
    bit for bit (kept in RAM, not unfused by subtraction)."""
    gen = _engine(lora_dir, tmp_path)
    gen.load()
    calls: list[str] = []
    blocks = _recording_compiled(gen, calls)
    transformer = gen.pipe.transformer
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    one = [("fp_diffusers.safetensors", 0.7)]
    two = [("fp_kohya.safetensors", 0.5), ("fp_diffusers.safetensors", 1.0)]

    def as_choices(pairs):
        return [{"name": n, "weight": w} for n, w in pairs]

    try:
        with_one = _run(gen, images, as_choices(one))
        assert calls, "the compiled blocks ran the LoRA job"
        assert not getattr(transformer, "peft_config", None)
        assert not any("lora_" in n for n, _ in transformer.named_parameters())
        assert np.array_equal(with_one, _fused_reference(lora_dir, tmp_path / "r1", one, images))
        assert gen.loras.fused == one
        assert np.array_equal(_run(gen, images, as_choices(one)), with_one)  # kept fused, nothing redone
        with_two = _run(gen, images, as_choices(two))  # from the kept weights, not on top of `one`
        assert np.array_equal(with_two, _fused_reference(lora_dir, tmp_path / "r2", two, images))
        calls.clear()
        assert np.array_equal(_run(gen, images, []), plain) and calls
        after = transformer.state_dict()
        assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    finally:
        for block in blocks:
            block._compiled_call_impl = None


def test_compiled_blocks_run_eagerly_when_a_lora_cannot_be_fused(lora_dir, images, tmp_path):
    """8-bit layers cannot take a merge: the LoRA stays beside them (PEFT's branch) and the blocks
    run eagerly for that job; a job without LoRA takes the layers out and runs the compiled blocks."""
    pipe = _pipe()
    store_linears_8bit(pipe.transformer, "int8", min_numel=64)
    gen = _engine(lora_dir, tmp_path, pipe=pipe)
    plain8 = _run(gen, images)
    calls: list[str] = []
    blocks = _recording_compiled(gen, calls)
    lora = [{"name": "fp_diffusers.safetensors", "weight": 0.7}]
    try:
        with_lora = _run(gen, images, lora)
        assert calls == [] and not np.array_equal(with_lora, plain8) and gen.loras.fused == []
        assert all(b._compiled_call_impl is not None for b in blocks)  # restored after the job
        without = _run(gen, images, [])
        assert calls and not getattr(gen.pipe.transformer, "peft_config", None)
        assert np.array_equal(without, plain8)
        calls.clear()
        assert np.array_equal(_run(gen, images, lora), with_lora) and calls == []
    finally:
        for block in blocks:
            block._compiled_call_impl = None
