"""CPU tests of partial residency: blocks split over GPU / RAM / disk tiers by the plan give the
resident frames exactly (fp32 on the CPU), and disk-tier blocks are read back from their files
(8-bit ones stay 8-bit) with a bounded read-ahead.

Real parts: the tiny FramePack pipeline with more blocks (real architecture, random weights), real
files on disk, a real reader thread, the studio's placement and generator.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from backend.pipeline.framepack.block_stream import BlockStreamer, stream_blocks
from backend.pipeline.framepack.engine import FramePackEngine
from backend.pipeline.framepack.memory import plan_for_mode
from backend.pipeline.framepack.weight_storage import load_model_8bit, store_linears_8bit
from backend.utils.config import Settings
from tests.helpers.framepack_models import build_pipeline
from tests.helpers.tiny_framepack import TINY_SPEC

H, W = 64, 96
SPEC = copy.deepcopy(TINY_SPEC)
SPEC["transformer"].update(num_layers=2, num_single_layers=3)
TIERS = ("gpu", "disk", "ram", "disk", "disk")  # mixed on purpose: gpu between streamed ones
SEGMENT = {"sections": 2, "seed": 3, "end_embed_weights": [0.3, 0.7]}
PARAMS = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}


def _images():
    return np.random.default_rng(0).integers(0, 256, (2, H, W, 3), dtype=np.uint8)


def _plan(tiers=TIERS):
    base = plan_for_mode("offload", "bf16", text_on_disk=False, dtype="fp32")
    return dataclasses.replace(
        base,
        mode="partial",
        tiers=tuple(tiers),
        blocks_gpu=tiers.count("gpu"),
        blocks_ram=tiers.count("ram"),
        blocks_disk=tiers.count("disk"),
    )


def _frames(pipe, tmp_path, plan=None):
    gen = FramePackEngine(Settings(framepack_compile="off", models_dir=tmp_path, read_ahead_blocks=2))
    if plan is None:
        gen.attach(pipe, "cpu", mode="cpu")
    else:
        gen.attach(pipe, "cpu", plan=plan)
    a, b = _images()
    return gen, gen.generate(a, b, "a cat", SEGMENT, PARAMS, lambda p: None)


@pytest.fixture(scope="module")
def resident_frames(tmp_path_factory):
    return _frames(build_pipeline(SPEC, "cpu", torch.float32, seed=0), tmp_path_factory.mktemp("resident"))[1]


@pytest.mark.slow
def test_partial_residency_gives_the_resident_frames_exactly(resident_frames, tmp_path):
    pipe = build_pipeline(SPEC, "cpu", torch.float32, seed=0)
    gen, frames = _frames(pipe, tmp_path, _plan())
    streamer: BlockStreamer = gen.placement.block_stream
    assert streamer.tiers == list(TIERS)
    assert np.array_equal(frames, resident_frames)
    forwards = SEGMENT["sections"] * PARAMS["steps"]
    # Every disk block was read for every forward (plus at most the read-ahead of the next step).
    assert forwards * 3 <= streamer.disk_reads <= forwards * 3 + streamer.read_ahead
    assert 1 <= streamer.max_reads_in_flight <= streamer.read_ahead
    # Between forwards the disk blocks hold no weights in memory: one-element placeholders.
    for i in (1, 3, 4):
        for p in streamer.blocks[i].parameters():
            assert p.untyped_storage().nbytes() <= p.element_size()
    files = list(streamer.folder.glob("block*.bin"))
    assert len(files) == 3 and streamer.bytes_on_disk == sum(f.stat().st_size for f in files)


@pytest.mark.slow
def test_disk_blocks_stay_8bit_and_match_8bit_resident(tmp_path):
    torch.manual_seed(0)
    ref = build_pipeline(SPEC, "cpu", torch.float32, seed=0)
    store_linears_8bit(ref.transformer, "int8", min_numel=64)
    _, want = _frames(ref, tmp_path / "a")
    pipe = build_pipeline(SPEC, "cpu", torch.float32, seed=0)
    store_linears_8bit(pipe.transformer, "int8", min_numel=64)
    gen, got = _frames(pipe, tmp_path / "b", _plan(("disk",) * 5))
    streamer = gen.placement.block_stream
    assert np.array_equal(got, want)
    # The files hold the 8-bit weights as they are: int8 payload, not re-widened.
    layouts = [entry for f in streamer.files.values() for entry in f.layout]
    assert any(dtype == torch.int8 for _, _, dtype, _ in layouts)
    payload = sum(n for _, n, _, _ in layouts)
    fp32 = build_pipeline(SPEC, "cpu", torch.float32).transformer
    fp32_bytes = sum(
        p.numel() * 4
        for blocks in (fp32.transformer_blocks, fp32.single_transformer_blocks)
        for p in blocks.parameters()
    )
    assert payload < 0.5 * fp32_bytes


@pytest.mark.parametrize("read_threads", [1, 3])
def test_read_ahead_is_bounded_by_its_buffers(tmp_path, read_threads):
    """With one buffer the reader can never run ahead by more than one block; the host holds
    `read_ahead` block buffers and nothing else of the disk tier, however many threads read."""
    pipe = build_pipeline(SPEC, "cpu", torch.float32, seed=0)
    transformer = pipe.transformer
    x = {k: v for k, v in _forward_inputs(transformer).items()}
    with torch.no_grad():
        want = transformer(**x)[0]
    streamer = stream_blocks(
        transformer, "cpu", ["disk"] * 5, disk_dir=tmp_path, read_ahead=1, read_threads=read_threads
    )
    with torch.no_grad():
        got = transformer(**x)[0]
        again = transformer(**x)[0]
    assert torch.equal(got, want) and torch.equal(again, want)
    assert streamer.max_reads_in_flight == 1
    assert len(streamer._free) + len(streamer._reads) == 1  # the one buffer, free or being filled
    biggest = max(f.nbytes for f in streamer.files.values())
    assert streamer.buffer_bytes == biggest


def test_a_block_is_read_in_page_aligned_slices_that_cover_it(tmp_path):
    from backend.pipeline.framepack.block_stream import ALIGN, _read_range, _slices, write_block

    for nbytes, parts in ((ALIGN, 4), (10 * ALIGN, 3), (7 * ALIGN, 7), (3 * ALIGN, 1)):
        slices = _slices(nbytes, parts)
        assert slices[0][0] == 0 and slices[-1][1] == nbytes and len(slices) <= parts
        assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
        assert all(lo % ALIGN == 0 for lo, _ in slices)
    tensors = [torch.randn(1000, 37), torch.arange(5000, dtype=torch.int8)]
    block = write_block(tensors, tmp_path / "b.bin")
    buffer = torch.zeros(block.nbytes, dtype=torch.uint8)
    for lo, hi in reversed(_slices(block.nbytes, 3)):  # any order: each slice is its own read
        _read_range(block.path, memoryview(buffer.numpy()), lo, hi)
    assert buffer.numpy().tobytes() == block.path.read_bytes()


def test_lean_loader_hands_each_block_over_complete(tiny_framepack_dir):
    """Blocks go to their tier as soon as their last tensor is read (host RAM holds one block)."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel as Transformer

    seen = []

    def place_unit(name, module):
        assert not any(p.is_meta for p in module.parameters()), name
        seen.append(name)

    model = load_model_8bit(
        Transformer, str(tiny_framepack_dir), "transformer", None, torch.float32, place_unit=place_unit
    )
    n_dual, n_single = len(model.transformer_blocks), len(model.single_transformer_blocks)
    assert sorted(seen) == sorted(
        [f"transformer_blocks.{i}" for i in range(n_dual)] + [f"single_transformer_blocks.{i}" for i in range(n_single)]
    )
    full = Transformer.from_pretrained(tiny_framepack_dir, subfolder="transformer")
    for (k, a), (k2, b) in zip(full.state_dict().items(), model.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_lean_loader_writes_disk_blocks_while_reading(tiny_framepack_dir, tmp_path):
    """The generator's block placer sends disk-tier blocks to their files during the read; the
    streamer then reads those files: same output as the model read whole."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel as Transformer

    gen = FramePackEngine(Settings(framepack_compile="off", models_dir=tmp_path))
    gen._transformer_config = Transformer.load_config(str(tiny_framepack_dir), subfolder="transformer")
    plan = _plan(("ram",) * 20 + ("disk",) * 40)  # tiny model: its dual block in RAM, single on disk
    model = load_model_8bit(
        Transformer, str(tiny_framepack_dir), "transformer", None, torch.float32, place_unit=gen._unit_placer(plan)
    )
    single = model.single_transformer_blocks[0]
    assert hasattr(single, "_studio_block_file") and single._studio_block_file.path.exists()
    assert all(p.untyped_storage().nbytes() <= p.element_size() for p in single.parameters())
    # The same reader without a placer (from_pretrained differs from both by float rounding).
    whole = load_model_8bit(Transformer, str(tiny_framepack_dir), "transformer", None, torch.float32)
    x = _forward_inputs(whole)
    with torch.no_grad():
        want = whole(**x)[0]
    stream_blocks(model, "cpu", ["ram", "disk"], disk_dir=tmp_path / "unused")
    with torch.no_grad():
        assert torch.equal(model(**x)[0], want)


def _forward_inputs(transformer):
    """One forward's inputs of FramePack's shapes for a tiny transformer."""
    c = transformer.config
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    window, h, w = 2, 4, 6
    index = torch.arange(0, 1 + window + 19)
    return dict(
        hidden_states=rand(1, c.in_channels, window, h, w),
        timestep=torch.tensor([900.0]),
        encoder_hidden_states=rand(1, 5, c.text_embed_dim),
        encoder_attention_mask=torch.ones(1, 5),
        pooled_projections=rand(1, c.pooled_projection_dim),
        image_embeds=rand(1, 4, c.image_proj_dim),
        indices_latents=index[1 : 1 + window],
        guidance=torch.tensor([10000.0]),
        latents_clean=rand(1, c.in_channels, 2, h, w),
        indices_latents_clean=torch.tensor([0, 1 + window]),
        latents_history_2x=rand(1, c.in_channels, 2, h, w),
        indices_latents_history_2x=index[2 + window : 4 + window],
        latents_history_4x=rand(1, c.in_channels, 16, h, w),
        indices_latents_history_4x=index[4 + window :],
        return_dict=False,
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU tier needs CUDA")
def test_partial_residency_on_the_gpu_gives_the_resident_frames(tmp_path):  # pragma: no cover - GPU only
    frames = {}
    for label, plan in (("resident", None), ("partial", dataclasses.replace(_plan(), dtype="bf16"))):
        pipe = build_pipeline(SPEC, "cpu", torch.float32, seed=0).to(torch.bfloat16)
        gen = FramePackEngine(Settings(framepack_compile="off", models_dir=tmp_path / label))
        if plan is None:
            gen.attach(pipe, "cuda", mode="resident")
        else:
            gen.attach(pipe, "cuda", plan=plan)
            streamer = gen.placement.block_stream
            assert [next(b.parameters()).device.type for b in streamer.blocks] == ["cuda", "cpu", "cpu", "cpu", "cpu"]
        a, b = _images()
        frames[label] = gen.generate(a, b, "a cat", SEGMENT, PARAMS, lambda p: None)
    assert np.array_equal(frames["partial"], frames["resident"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast on the GPU needs CUDA")
def test_fp16_plan_on_the_gpu_runs_without_bf16(tmp_path):  # pragma: no cover - GPU only
    """The T4's arithmetic (fp16 autocast, fp32 residual stream) with partial residency gives the
    frames of the same fp16 model resident. (Whole tiny jobs on the GPU differ from the CPU's by
    ~24 levels in bf16 and fp16 alike, so the CPU is no reference for frames;
    benchmarks/fp16_parts.py compares each part instead.)"""
    frames = {}
    for label, tiers in (("resident", ("gpu",) * 5), ("partial", TIERS)):
        pipe = build_pipeline(SPEC, "cpu", torch.float32, seed=0).to(torch.float16)
        gen = FramePackEngine(Settings(framepack_compile="off", models_dir=tmp_path / label))
        gen.attach(pipe, "cuda", plan=dataclasses.replace(_plan(tiers), dtype="fp16", text_on_disk=True))
        assert gen.policy.name == "fp16"
        seen = []
        pipe.transformer.single_transformer_blocks[0].register_forward_hook(
            lambda m, a, out, seen=seen: seen.append(out[0].dtype)
        )
        a, b = _images()
        frames[label] = gen.generate(a, b, "a cat", SEGMENT, PARAMS, lambda p: None)
        assert seen and all(d == torch.float32 for d in seen)  # the residual stream stays fp32
    assert np.array_equal(frames["partial"], frames["resident"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the allocator cap needs CUDA")
def test_reserved_vram_stays_within_the_vram_limit(tmp_path):  # pragma: no cover - GPU only
    """Under STUDIO_VRAM_LIMIT_GIB the allocator, growing expandable segments by whole pages, must
    not reserve past the limit however odd the sizes asked for (it passed its own cap by 2-4 MiB)."""
    from backend.pipeline.framepack.memory import enable_expandable_segments
    from backend.pipeline.framepack.residency import GIB

    enable_expandable_segments()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    limit = torch.cuda.memory_reserved() / GIB + 1.0
    FramePackEngine(Settings(vram_limit_gib=limit, models_dir=tmp_path))._cap_vram("cuda")
    torch.cuda.reset_peak_memory_stats()
    rng = np.random.default_rng(0)
    kept = []
    try:
        for _ in range(2000):
            nbytes = int(rng.choice([rng.integers(1, 1 << 20), rng.integers(1 << 20, 48 << 20)]))
            try:
                kept.append(torch.empty(nbytes, dtype=torch.uint8, device="cuda"))
            except torch.OutOfMemoryError:
                kept = kept[::2]  # free every other one: holes of every size
            if len(kept) > 8 and rng.random() < 0.2:
                kept.pop(int(rng.integers(len(kept))))
        assert torch.cuda.max_memory_reserved() <= limit * GIB
    finally:
        del kept
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
