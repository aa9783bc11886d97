"""CPU tests of the memory levers of offload and fp8 modes: fp8 weight storage with
per-channel scales, and the text encoder streamed from disk layer by layer.

Real parts: the tiny FramePack pipeline (real architectures, random weights), real safetensors
files, a real child process for the stale-directory case.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from backend.jobs.params import DRAFT_CACHE
from backend.pipeline.framepack.disk_stream import remove_stale, stream_from_disk, streaming_units
from backend.pipeline.framepack.engine import FramePackEngine
from backend.pipeline.framepack.memory import plan_for_mode
from backend.pipeline.framepack.residency import plan_residency
from backend.pipeline.framepack.weight_storage import StoredLinear8, store_linears_8bit
from backend.utils.config import Settings
from tests.helpers.tiny_framepack import build_tiny_pipeline

H, W = 64, 96


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def _linear_and_input(std: float = 0.02):
    torch.manual_seed(0)
    linear = nn.Linear(512, 384).to(torch.bfloat16)
    with torch.no_grad():
        linear.weight.normal_(0, std)  # typical trained-weight magnitude
    return linear, torch.randn(7, 512, dtype=torch.bfloat16)


@pytest.mark.parametrize("fmt,dtype", [("fp8", torch.float8_e4m3fn), ("int8", torch.int8)])
def test_stored_linear_is_a_linear_with_row_scales(fmt, dtype):
    linear, x = _linear_and_input()
    with torch.no_grad():
        ref = linear(x).float()
        stored = StoredLinear8.from_linear(linear, fmt)
        out = stored(x)
    assert isinstance(stored, nn.Linear)  # offloading hooks pick it up as a leaf layer
    assert stored.weight.dtype == dtype and stored.weight_scale.shape == (384, 1)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    assert 0 < _rel(out.float(), ref) < 0.04


def test_int8_rows_are_more_accurate_than_fp8_and_than_a_plain_cast():
    """The measured reason for the default format: Gaussian rows lose less in int8 than in e4m3,
    and e4m3 with row scales beats a plain e4m3 cast (diffusers' layerwise casting) on small weights."""
    linear, x = _linear_and_input(std=0.005)
    with torch.no_grad():
        ref = linear(x).float()
        err = {fmt: _rel(StoredLinear8.from_linear(linear, fmt)(x).float(), ref) for fmt in ("fp8", "int8")}
        plain = torch.nn.functional.linear(x, linear.weight.to(torch.float8_e4m3fn).to(torch.bfloat16), linear.bias)
    assert err["int8"] < 0.6 * err["fp8"], err
    assert _rel(plain.float(), ref) > 2 * err["fp8"], err


def test_store_linears_8bit_halves_bf16_weights_and_keeps_small_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024), nn.GELU(), nn.Linear(1024, 16), nn.Linear(16, 1024)).to(torch.bfloat16)
    x = torch.randn(3, 1024, dtype=torch.bfloat16)
    with torch.no_grad():
        ref = model(x).float()
    count, saved = store_linears_8bit(model, "int8")
    assert count == 1  # the two small ones stay (below MIN_WEIGHT_NUMEL)
    assert isinstance(model[0], StoredLinear8) and type(model[2]) is nn.Linear
    assert saved == 1024 * 1024 * 2 - 1024 * 1024 - 1024 * 4
    with torch.no_grad():
        assert _rel(model(x).float(), ref) < 0.03


@pytest.mark.parametrize("fmt", ["fp8", "int8"])
def test_8bit_transformer_generates_close_to_full_precision(fmt):
    """The tiny FramePack transformer with 8-bit linears: same job, close frames, not equal."""
    images = np.random.default_rng(0).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    segment = {"sections": 2, "seed": 3, "end_embed_weights": [0.3, 0.7]}
    params = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
    frames = {}
    for storage in ("full", fmt):
        pipe = build_tiny_pipeline(0)
        if storage != "full":
            count, _ = store_linears_8bit(pipe.transformer, fmt, min_numel=64)
            assert count > 10
        gen = FramePackEngine(Settings(framepack_compile="off"))
        gen.attach(pipe, "cpu", mode="cpu")
        frames[storage] = gen.generate(images[0], images[1], "a cat", segment, params, lambda p: None)
    diff = np.abs(frames[fmt].astype(int) - frames["full"].astype(int))
    assert frames[fmt].shape == frames["full"].shape
    assert 0 < diff.mean() < 4.0, diff.mean()


def test_plan_keeps_the_text_encoder_off_host_ram_outside_resident_mode():
    assert plan_residency(79, 100, (9, 0)).text_on_disk is False  # resident: on the GPU
    assert plan_residency(11, 64, (9, 0)).text_on_disk is True
    assert plan_residency(79, 30, (9, 0), mode_request="fp8").text_on_disk is True
    assert plan_residency(79, 200, (9, 0), mode_request="fp8").text_on_disk is False
    assert plan_residency(11, 64, (9, 0), mode_request="offload").text_on_disk is True


def test_plan_for_mode_names_the_corners():
    offload = plan_for_mode("offload", "fp8")
    assert (offload.mode, offload.weights, offload.blocks_ram, offload.text_on_disk) == ("offload", "8bit", 60, True)
    fp8 = plan_for_mode("fp8", text_on_disk=False)
    assert (fp8.weights, fp8.blocks_gpu, fp8.text_on_disk) == ("8bit", 60, False)
    assert plan_for_mode("offload", "bf16").weights == "2byte"


def test_text_encoder_streamed_from_disk_encodes_the_same(tmp_path):
    pipe = build_tiny_pipeline(0)
    with torch.no_grad():
        ref = pipe.encode_prompt(prompt="a cat walks", device=torch.device("cpu"))
    encoder = pipe.text_encoder
    n_layers = len(encoder.layers)
    stream = stream_from_disk(encoder, "cpu", tmp_path / "scratch")
    assert [n for n, _ in streaming_units(encoder)] == [f"layers.{i}" for i in range(n_layers)]
    assert len(list(stream.folder.glob("*.safetensors"))) == n_layers and stream.bytes_on_disk > 0
    assert all(p.is_meta for p in encoder.layers.parameters())  # no weights left in host memory
    with torch.no_grad():
        got = pipe.encode_prompt(prompt="a cat walks", device=torch.device("cpu"))
        again = pipe.encode_prompt(prompt="a cat walks", device=torch.device("cpu"))
    for r, g, a in zip(ref, got, again):
        assert torch.equal(r, g) and torch.equal(r, a)
    assert stream.loads == 2 * n_layers
    assert all(p.is_meta for p in encoder.layers.parameters())  # dropped again after each forward
    folder = stream.folder
    del pipe, encoder, stream
    gc.collect()
    assert not folder.exists()  # files go with the module


def test_remove_stale_keeps_live_processes(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (tmp_path / f"{dead}-abcd1234").mkdir()
    (tmp_path / f"{dead}-abcd1234" / "000.safetensors").write_bytes(b"x")
    mine = tmp_path / f"{os.getpid()}-00000000"
    mine.mkdir()
    other = tmp_path / "not-a-scratch-dir"
    other.mkdir()
    remove_stale(tmp_path)
    assert not (tmp_path / f"{dead}-abcd1234").exists()
    assert mine.exists() and other.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="offload placement needs CUDA")
def test_offload_placement_on_gpu(tmp_path):  # pragma: no cover - GPU machines only
    pipe = build_tiny_pipeline(0).to(torch.bfloat16)
    gen = FramePackEngine(
        Settings(framepack_compile="off", offload_weights="fp8", storage_8bit="int8", models_dir=tmp_path)
    )
    gen.attach(pipe, "cuda", mode="offload")
    assert gen.offload_weights == "fp8"
    images = np.random.default_rng(0).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    segment = {"sections": 1, "seed": 3, "end_embed_weights": [0.5]}
    params = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
    frames = gen.generate(images[0], images[1], "a cat", segment, params, lambda p: None)
    assert frames.shape == (9, H, W, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="offload placement needs CUDA")
def test_bf16_offload_gives_the_resident_frames(tmp_path):  # pragma: no cover - GPU machines only
    """Block streaming and the disk-streamed text encoder change where weights live, not the maths."""
    images = np.random.default_rng(1).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    segment = {"sections": 2, "seed": 5, "end_embed_weights": [0.3, 0.7]}
    params = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
    frames = {}
    for mode in ("resident", "offload"):
        pipe = build_tiny_pipeline(0).to(torch.bfloat16)
        gen = FramePackEngine(Settings(framepack_compile="off", offload_weights="bf16", models_dir=tmp_path))
        gen.attach(pipe, "cuda", mode=mode)
        frames[mode] = gen.generate(images[0], images[1], "a cat", segment, params, lambda p: None)
        if mode == "offload":
            blocks = gen.placement.block_stream
            assert all(p.device.type == "cpu" and p.is_pinned() for b in blocks.blocks for p in b.parameters())
    assert np.array_equal(frames["offload"], frames["resident"])


def test_load_model_8bit_equals_loading_then_quantising(tiny_framepack_dir, tmp_path):
    """The lean loader (8-bit as each tensor is read) builds the same model as the long way round."""
    from diffusers import HunyuanVideoFramepackTransformer3DModel as Transformer

    from backend.pipeline.framepack.weight_storage import load_model_8bit

    # bf16 as on a GPU (the files are float32): every tensor must come out in the asked dtype.
    long_way = Transformer.from_pretrained(tiny_framepack_dir, subfolder="transformer", dtype=torch.bfloat16)
    count, _ = store_linears_8bit(long_way, "int8", min_numel=64)
    lean = load_model_8bit(Transformer, str(tiny_framepack_dir), "transformer", "int8", torch.bfloat16, min_numel=64)
    assert lean.dtype == torch.bfloat16
    a, b = long_way.state_dict(), lean.state_dict()
    assert count > 10 and a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    assert sum(isinstance(m, StoredLinear8) for m in lean.modules()) == count
    (tmp_path / "transformer").mkdir()  # a config without weights: a clear error, not random weights
    (tmp_path / "transformer" / "config.json").write_bytes(
        (tiny_framepack_dir / "transformer" / "config.json").read_bytes()
    )
    with pytest.raises(FileNotFoundError, match="no .safetensors"):
        load_model_8bit(Transformer, str(tmp_path), "transformer", "int8", torch.float32)


def test_pipeline_reads_with_a_disk_streamed_text_encoder(tiny_framepack_dir, tmp_path):
    """Offload loading: the text encoder goes from its checkpoint to disk files, layer by layer,
    without a full copy in memory; then the rest is read. bf16 as on a GPU (the files are float32)."""
    from diffusers import HunyuanVideoFramepackPipeline
    from transformers import LlamaModel

    from backend.pipeline.framepack.disk_stream import read_to_disk_stream

    full = HunyuanVideoFramepackPipeline.from_pretrained(tiny_framepack_dir, dtype=torch.bfloat16)
    encoder = read_to_disk_stream(LlamaModel, str(tiny_framepack_dir), "text_encoder", "cpu", tmp_path, torch.bfloat16)
    assert encoder._studio_disk_stream.loads == 0 and all(p.is_meta for p in encoder.layers.parameters())
    lean = HunyuanVideoFramepackPipeline.from_pretrained(tiny_framepack_dir, text_encoder=encoder, dtype=torch.bfloat16)
    assert lean.text_encoder is encoder and all(p.is_meta for p in encoder.layers.parameters())
    with torch.no_grad():
        ref = full.encode_prompt(prompt="a red bird", device=torch.device("cpu"))
        got = lean.encode_prompt(prompt="a red bird", device=torch.device("cpu"))
    for r, g in zip(ref, got):
        assert torch.equal(r, g)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the lean read path runs on CUDA")
def test_offload_load_from_disk_on_gpu(tiny_framepack_dir, tmp_path):  # pragma: no cover - GPU machines only
    gen = FramePackEngine(
        Settings(
            framepack_dir=str(tiny_framepack_dir),
            gpu_profile="offload",
            offload_weights="fp8",
            framepack_compile="off",
            models_dir=tmp_path,
        )
    )
    gen.load()
    assert gen.memory_mode == "offload" and gen.offload_weights == "fp8"
    # The lean read path: the text encoder went from its checkpoint to disk files.
    assert gen.pipe.text_encoder._studio_disk_stream.bytes_on_disk > 0
    images = np.random.default_rng(0).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    segment = {"sections": 1, "seed": 3, "end_embed_weights": [0.5]}
    params = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
    assert gen.generate(images[0], images[1], "a cat", segment, params, lambda p: None).shape == (9, H, W, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="placement needs CUDA")
def test_fp8_mode_with_the_text_encoder_on_disk(tmp_path):  # pragma: no cover - GPU machines only
    from backend.pipeline.framepack.memory import place

    pipe = build_tiny_pipeline(0).to(torch.bfloat16).to("cuda")
    with torch.no_grad():
        ref = pipe.encode_prompt(prompt="a red bird", device=torch.device("cuda"))
    placement = place(pipe, "cuda", "fp8", scratch_dir=tmp_path, text_on_disk=True)
    assert placement.text_stream is not None and placement.block_stream is None
    placement.encoders_on()  # CLIP goes back to the GPU for encoding, as in a job
    with torch.no_grad():
        got = pipe.encode_prompt(prompt="a red bird", device=torch.device("cuda"))
    for r, g in zip(ref, got):
        assert torch.equal(r, g)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="offload placement needs CUDA")
def test_draft_cache_in_offload_mode(tmp_path):  # pragma: no cover - GPU machines only
    """MagCache skips whole forwards; the block streamer must drop their prefetched copies."""
    pipe = build_tiny_pipeline(0).to(torch.bfloat16)
    gen = FramePackEngine(Settings(framepack_compile="off", offload_weights="bf16", models_dir=tmp_path))
    gen.attach(pipe, "cuda", mode="offload")
    images = np.random.default_rng(2).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    segment = {"sections": 2, "seed": 3, "end_embed_weights": [0.4, 0.6]}
    # The fast mode (2 of 8 steps skipped), and one that skips every step after a section's first.
    for cache in (DRAFT_CACHE, "magcache:1000:100:0"):
        params = {
            "steps": 8,
            "latent_window_size": 2,
            "distilled_guidance": 10.0,
            "true_cfg": 1.0,
            "cache": cache,
        }
        frames = gen.generate(images[0], images[1], "a cat", segment, params, lambda p: None)
        assert frames.shape == (17, H, W, 3)
    assert len(gen.placement.block_stream.ready) <= 1
