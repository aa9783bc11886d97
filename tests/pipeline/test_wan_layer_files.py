"""Wan's disk placement reads the transformer from its checkpoint straight into diffusers' layer
files (`pipeline/wan/layer_files.py`), so a machine with less RAM than the transformer can load it.

Tiny random models of the real architecture, saved in diffusers layout: the files hold what
diffusers' own `from_pretrained` + `enable_group_offload(offload_to_disk_path=…)` writes, tensor for
tensor (fp32 and the bf16 a GPU loads, with the float32 modules diffusers keeps); the transformer is
never materialised; the frames equal the plain pipeline's, Wan 2.1 and both Wan 2.2 experts.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.pipeline.wan.wan_engine import WanEngine
from backend.utils.config import Settings
from backend.utils.model_registry import WAN21, WAN22
from tests.helpers.tiny_wan import plain_frames, save_tiny_pipeline, save_tiny_wan22_pipeline

MODELS = {"wan21": (WAN21, save_tiny_pipeline), "wan22": (WAN22, save_tiny_wan22_pipeline)}
H, W = 32, 48


def job(model, quality: int = 30) -> dict:
    """The studio's parameters for a short transition of `model` (its own guidance, shift)."""
    from backend.contracts.models import JobSettings
    from backend.jobs import params as smart_params

    return smart_params.resolve(
        JobSettings(seconds=0.5, quality=quality, seed=11), 1, [(W, H), (W, H)], engine="wan", wan_model=model.key
    )


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    shape = (H, W, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan-layer-files")
    return {key: save(root / model.folder) for key, (model, save) in MODELS.items()}


def _tensors(folder):
    from safetensors.torch import load_file

    return {p.name: load_file(str(p)) for p in sorted(folder.glob("group_*.safetensors"))}


@pytest.fixture
def small_layers_8bit(monkeypatch):
    """The tiny model's linears are below the size worth 8 bits: store every one."""
    from backend.pipeline.framepack import weight_storage

    monkeypatch.setattr(weight_storage, "MIN_WEIGHT_NUMEL", 1)


@pytest.mark.parametrize(
    "dtype_name,fmt", [("float32", None), ("bfloat16", None), ("bfloat16", "int8"), ("bfloat16", "fp8")]
)
def test_the_layer_files_hold_what_diffusers_writes_from_the_loaded_model(
    saved, dtype_name, fmt, small_layers_8bit, tmp_path
):
    """8-bit: the reference is the loaded model with its blocks' linears stored 8-bit in memory
    (`store_blocks_8bit` on real weights), then diffusers' own writing."""
    import torch
    from diffusers import WanTransformer3DModel

    from backend.pipeline.framepack.weight_storage import SafetensorsReader, safetensors_files
    from backend.pipeline.wan import layer_files
    from backend.pipeline.wan.wan_loading import group_offload

    dtype = getattr(torch, dtype_name)
    folder = saved["wan21"]

    loaded = WanTransformer3DModel.from_pretrained(str(folder), subfolder="transformer", dtype=dtype)
    if fmt:
        assert layer_files.store_blocks_8bit(loaded, fmt) > 0
    want_dtypes = {n: t.dtype for n, t in list(loaded.named_parameters()) + list(loaded.named_buffers())}
    # diffusers' own writer (the studio writes every file itself, `layer_files.DiskLayers`)
    loaded.enable_group_offload(
        onload_device=torch.device("cpu"),
        offload_type="leaf_level",
        low_cpu_mem_usage=True,
        offload_to_disk_path=str(tmp_path / "diffusers"),
    )
    layer_files.alias_lora_base_layers(loaded, tmp_path / "diffusers")  # the names a user LoRA gives

    empty = layer_files.empty_transformer(folder, "transformer", dtype, fmt)
    assert all(p.is_meta for p in empty.parameters())  # nothing read yet
    got_dtypes = {n: t.dtype for n, t in list(empty.named_parameters()) + list(empty.named_buffers())}
    assert got_dtypes == want_dtypes  # float32 where diffusers keeps it (norms, time embedder, RoPE)
    reader = SafetensorsReader(safetensors_files(str(folder), "transformer"))
    group_offload(empty, "cpu", tmp_path / "studio", (reader, dtype))

    want, got = _tensors(tmp_path / "diffusers"), _tensors(tmp_path / "studio")
    assert set(got) == set(want) and len(got) > 10  # the same groups, no placeholder left
    for name, tensors in want.items():
        assert set(got[name]) == set(tensors), name
        for key, value in tensors.items():
            assert got[name][key].dtype == value.dtype and torch.equal(got[name][key], value), (name, key)


@pytest.mark.parametrize("fmt", [None, "int8"])
def test_the_text_encoder_files_come_from_its_checkpoint_tied_embedding_in_each_group(
    saved, fmt, small_layers_8bit, tmp_path
):
    """UMT5 on disk: built on the meta device with transformers' own dtypes and tie, its files
    written from the checkpoint equal those written from the loaded model (8-bit: converted in
    memory), and the embedding is real in both groups that hold it (`shared`, `embed_tokens`),
    written once."""
    import torch
    from safetensors.torch import load_file
    from transformers import UMT5EncoderModel

    from backend.pipeline.framepack import weight_storage
    from backend.pipeline.framepack.weight_storage import SafetensorsReader, safetensors_files
    from backend.pipeline.wan import layer_files
    from backend.pipeline.wan.wan_loading import group_offload

    folder = saved["wan21"]
    dtype = torch.bfloat16
    loaded = UMT5EncoderModel.from_pretrained(str(folder / "text_encoder"), dtype=dtype)
    if fmt:
        assert weight_storage.store_linears_8bit(loaded, fmt, min_numel=1)[0] > 0
    embedding = loaded.shared.weight.detach().clone()
    want_dtypes = {n: t.dtype for n, t in loaded.named_parameters()}
    group_offload(loaded, "cpu", tmp_path / "loaded")

    empty = layer_files.empty_text_encoder(folder, dtype, fmt)
    assert all(p.is_meta for p in empty.parameters())
    assert {n: t.dtype for n, t in empty.named_parameters()} == want_dtypes
    reader = SafetensorsReader(safetensors_files(str(folder), "text_encoder"))
    group_offload(empty, "cpu", tmp_path / "studio", (reader, dtype))

    want, got = _tensors(tmp_path / "loaded"), _tensors(tmp_path / "studio")
    assert set(got) == set(want) and len(got) > 5
    for name, tensors in want.items():
        for key, value in tensors.items():
            assert torch.equal(got[name][key], value), (name, key)
    for group in ("shared", "encoder.embed_tokens"):
        (value,) = load_file(str(layer_files.file_of(tmp_path / "studio", group))).values()
        assert torch.equal(value, embedding), group
    # one file with two names: the embedding (1 B parameters at full size) is written once
    inodes = {layer_files.file_of(tmp_path / "studio", g).stat().st_ino for g in ("shared", "encoder.embed_tokens")}
    assert len(inodes) == 1

    # A checkpoint that names the tied embedding by its other name gives the same files.
    from safetensors.torch import save_file

    state = {k: v for f in reader.files for k, v in load_file(str(f)).items()}
    state["encoder.embed_tokens.weight"] = state.pop("shared.weight")
    save_file(state, str(tmp_path / "renamed.safetensors"))
    renamed = SafetensorsReader([tmp_path / "renamed.safetensors"])
    group_offload(layer_files.empty_text_encoder(folder, dtype, fmt), "cpu", tmp_path / "renamed", (renamed, dtype))
    assert _tensors(tmp_path / "renamed").keys() == got.keys()
    assert all(torch.equal(v, got[n][k]) for n, t in _tensors(tmp_path / "renamed").items() for k, v in t.items())


def test_the_reader_casts_piece_by_piece_like_to_and_names_a_short_file(monkeypatch, tmp_path):
    """`SafetensorsReader.read(key, dtype)` casts a piece at a time (a 64 MiB piece at full size;
    here 40 bytes, so pieces end mid-row and the last is short): bit for bit what `.to` gives."""
    import torch
    from safetensors.torch import save_file

    from backend.pipeline.framepack import weight_storage

    monkeypatch.setattr(weight_storage, "_CAST_PIECE_BYTES", 40)
    torch.manual_seed(0)
    state = {"w": torch.randn(7, 13) * 100, "i": torch.arange(5), "h": torch.randn(3).to(torch.bfloat16)}
    save_file(state, str(tmp_path / "c.safetensors"))
    reader = weight_storage.SafetensorsReader([tmp_path / "c.safetensors"])
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        got = reader.read("w", dtype)
        assert got.dtype == dtype and torch.equal(got, state["w"].to(dtype))
    assert torch.equal(reader.read("i", torch.bfloat16), state["i"])  # integers stay as stored
    assert torch.equal(reader.read("h", torch.float32), state["h"].float())

    data = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "c.safetensors").write_bytes(data[:-60])  # a download cut short
    with pytest.raises(OSError, match="ends before"):
        reader.read("w", torch.bfloat16)


def test_a_checkpoint_missing_a_weight_is_refused_by_name(saved, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from backend.pipeline.framepack.weight_storage import SafetensorsReader
    from backend.pipeline.wan import layer_files
    from backend.pipeline.wan.wan_loading import group_offload

    folder = saved["wan21"]
    (file,) = sorted((folder / "transformer").glob("*.safetensors"))
    state = load_file(str(file))
    state.pop("blocks.0.ffn.net.0.proj.weight")
    save_file(state, str(tmp_path / "cut.safetensors"))
    empty = layer_files.empty_transformer(folder, "transformer", torch.float32)
    reader = SafetensorsReader([tmp_path / "cut.safetensors"])
    with pytest.raises(ValueError, match=r"blocks\.0\.ffn\.net\.0\.proj\.weight"):
        group_offload(empty, "cpu", tmp_path / "scratch", (reader, torch.float32))


@pytest.mark.parametrize("key", sorted(MODELS))
def test_read_for_the_disk_placement_then_generate_gives_the_plain_pipeline_frames(saved, key, images, tmp_path):
    from diffusers import WanImageToVideoPipeline

    from backend.pipeline.wan.wan_loading import read

    model, _ = MODELS[key]
    folder = saved[key]
    pipe, checkpoints = read(folder, model.components, "cpu", "group_offload_disk")
    on_disk = [c for c in model.components if c.startswith("transformer")] + ["text_encoder"]
    assert sorted(checkpoints) == sorted(on_disk)
    assert all(p.is_meta for name in on_disk for p in getattr(pipe, name).parameters())
    assert pipe.text_encoder.shared.weight is pipe.text_encoder.encoder.embed_tokens.weight  # tied, as loaded
    gen = WanEngine(Settings(models_dir=tmp_path / "models", device="cpu", wan_model=model.key))
    other = "image_encoder" if key == "wan22" else "transformer_2"  # the other model's, left over
    (gen.scratch_dir() / other).mkdir(parents=True)
    (gen.scratch_dir() / other / "group_0.safetensors").write_bytes(b"old")
    gen.attach(pipe, "cpu", "group_offload_disk", "test", checkpoints)
    for name in on_disk:
        assert len(list((gen.scratch_dir() / name).glob("group_*.safetensors"))) > 10
    assert sorted(p.name for p in gen.scratch_dir().iterdir()) == sorted(on_disk)

    first, last = images
    p = job(model)
    p["steps"] = 2  # Wan 2.2: one step on each expert
    seg = p["segments"][0]
    frames = gen.generate(first, last, "a cat walks", seg, p, lambda _p: None)
    reference = WanImageToVideoPipeline.from_pretrained(str(folder))
    reference.set_progress_bar_config(disable=True)
    expected = plain_frames(reference, first, last, "a cat walks", seg["frames"], 2, model.guidance, seg["seed"], H, W)
    np.testing.assert_array_equal(frames, expected)


def test_the_8bit_disk_placement_reads_like_the_loaded_model_and_a_lora_comes_off_exactly(
    saved,
    small_layers_8bit,
    images,
    tmp_path,
):
    """STUDIO_OFFLOAD_WEIGHTS=auto on the disk placement stores the blocks' linears (and UMT5's)
    in int8: read from the checkpoint or converted from the loaded model, the same frames; near the
    bf16 frames but not equal (the storage is not exact); a user LoRA moves them and comes off
    exactly."""
    from diffusers import WanImageToVideoPipeline

    from backend.pipeline.framepack.weight_storage import StoredLinear8
    from backend.pipeline.wan.wan_loading import read
    from tests.helpers import lora_formats
    from tests.helpers.tiny_wan import build_tiny_pipeline

    folder = saved["wan21"]
    first, last = images
    p = job(WAN21)
    p["steps"] = 2
    seg = p["segments"][0]
    loras = tmp_path / "loras"
    t = build_tiny_pipeline().transformer
    lora_formats.diffusers_lora(t, lora_formats.WAN_DIFFUSERS_MODULES, loras / "wan_diffusers.safetensors")

    def run(gen, chosen=None):
        job_segment = {**seg, "loras": chosen} if chosen is not None else seg
        return gen.generate(first, last, "a cat walks", job_segment, p, lambda _p: None)

    def engine(name, weights="auto"):
        return WanEngine(Settings(models_dir=tmp_path / name, device="cpu", lora_dir=loras, offload_weights=weights))

    from_checkpoint = engine("a")
    pipe, checkpoints = read(folder, WAN21.components, "cpu", "group_offload_disk", "int8")
    from_checkpoint.attach(pipe, "cpu", "group_offload_disk", "test", checkpoints)
    assert from_checkpoint.stored_8bit == "int8" and from_checkpoint.describe()["stored_8bit"] == "int8"
    assert any(isinstance(m, StoredLinear8) for m in pipe.text_encoder.modules())
    converted = engine("b")
    converted.attach(WanImageToVideoPipeline.from_pretrained(str(folder)), "cpu", "group_offload_disk", "test")
    bf16 = engine("c", "bf16")
    bf16.attach(WanImageToVideoPipeline.from_pretrained(str(folder)), "cpu", "group_offload_disk", "test")
    assert bf16.stored_8bit is None

    frames = run(from_checkpoint)
    np.testing.assert_array_equal(frames, run(converted))
    exact = run(bf16)
    moved = np.abs(frames.astype(int) - exact).mean()
    assert 0 < moved < 2.0, moved

    chosen = [{"name": "wan_diffusers.safetensors", "weight": 1.0}]
    with_lora = run(from_checkpoint, chosen)
    assert np.abs(with_lora.astype(int) - frames).mean() > 4 * moved
    np.testing.assert_array_equal(run(from_checkpoint), frames)


def test_a_restart_reuses_the_layer_files_and_a_changed_checkpoint_or_a_crash_rewrites_them(
    saved,
    images,
    monkeypatch,
    tmp_path,
):
    """The layer files outlive the process: the next load of the same checkpoint reads them as
    they are (nothing written, the same frames); a checkpoint file changed since, or a folder left
    without its manifest (a load killed mid-write), is written again."""
    import os

    from backend.pipeline.wan import layer_files
    from backend.pipeline.wan.wan_loading import read

    folder = saved["wan21"]
    first, last = images
    p = job(WAN21)
    p["steps"] = 2
    seg = p["segments"][0]
    writes = []  # the transformer's
    folders = []  # every folder written
    real_write = layer_files.write_from_checkpoint

    def counting_write(module, folder, *args, **kwargs):
        writes.extend([1] if folder.name == "transformer" else [])
        folders.append(folder.name)
        return real_write(module, folder, *args, **kwargs)

    monkeypatch.setattr(layer_files, "write_from_checkpoint", counting_write)
    models = tmp_path / "models"

    def load():
        gen = WanEngine(Settings(models_dir=models, device="cpu", offload_weights="bf16"))
        pipe, checkpoints = read(folder, WAN21.components, "cpu", "group_offload_disk")
        gen.attach(pipe, "cpu", "group_offload_disk", "test", checkpoints)
        return gen, gen.generate(first, last, "a cat walks", seg, p, lambda _p: None)

    gen, frames = load()
    layers = gen.scratch_dir() / "transformer"
    assert writes == [1] and (layers / layer_files.MANIFEST).is_file()
    assert sorted(folders) == ["text_encoder", "transformer"]
    times = {f.name: f.stat().st_mtime_ns for f in layers.glob("group_*.safetensors")}
    gen.release()

    gen, again = load()  # a restart: same checkpoint
    assert writes == [1] and len(folders) == 2  # UMT5's folder is reused too
    assert {f.name: f.stat().st_mtime_ns for f in layers.glob("group_*.safetensors")} == times
    np.testing.assert_array_equal(again, frames)
    gen.release()

    (checkpoint,) = sorted((folder / "transformer").glob("*.safetensors"))
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # downloaded again
    gen, _ = load()
    assert writes == [1, 1]
    gen.release()

    (layers / layer_files.MANIFEST).unlink()  # as if killed before the manifest
    gen, rewritten = load()
    assert writes == [1, 1, 1] and (layers / layer_files.MANIFEST).is_file()
    np.testing.assert_array_equal(rewritten, frames)
