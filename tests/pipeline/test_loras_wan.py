"""User LoRAs on the tiny Wan 2.1 FLF2V of the real architecture (CPU), through the studio's engine.

diffusers/PEFT, ComfyUI/LightX2V and musubi-tuner files each change the frames, equal diffusers'
own `load_lora_weights` + `set_adapters` on the same model, and come off exactly; a user LoRA and
the fast mode's distillation LoRA stack.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.contracts.models import JobSettings
from backend.jobs import params as smart_params
from backend.pipeline.wan.wan_engine import WanEngine
from backend.utils.config import Settings
from backend.utils.lora_files import inspect, model_width
from backend.utils.model_registry import WAN_FOLDER
from tests.helpers import lora_formats
from tests.helpers.tiny_wan import build_tiny_pipeline, lightx2v_style_lora, save_tiny_pipeline

H, W = 32, 48


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan-models")
    save_tiny_pipeline(root / WAN_FOLDER)
    folder = root / "loras"
    t = build_tiny_pipeline().transformer
    lora_formats.diffusers_lora(t, lora_formats.WAN_DIFFUSERS_MODULES, folder / "wan_diffusers.safetensors")
    lightx2v_style_lora(folder / "wan_comfy.safetensors", rank=2, seed=5, scale=0.3)
    lora_formats.musubi_wan_lora(t, folder / "wan_musubi.safetensors")
    return root, folder


@pytest.fixture(scope="module")
def engine(setup):
    root, folder = setup
    gen = WanEngine(Settings(models_dir=root, device="cpu"))
    gen.load()
    return gen


@pytest.fixture(scope="module")
def reference(setup):
    """A second engine for diffusers' own path: adapters loaded on its pipeline by the test."""
    root, _ = setup
    gen = WanEngine(Settings(models_dir=root, device="cpu", lora_dir=root / "none"))
    gen.load()
    return gen


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


PARAMS = smart_params.resolve(JobSettings(seconds=0.3, quality=70, seed=2), 1, [(W, H)] * 2, engine="wan")
PARAMS["steps"] = 1
SEGMENT = PARAMS["segments"][0]


def _run(gen, images, loras=None):
    seg = {**SEGMENT, "loras": loras} if loras is not None else SEGMENT
    return gen.generate(*images, "a cat turns", seg, PARAMS, lambda p: None)


@pytest.fixture(scope="module")
def plain(engine, images):
    return _run(engine, images)


def test_the_default_folder_is_under_the_models_folder(setup, engine):
    root, folder = setup
    assert engine.settings.loras_dir == root / "loras" == folder
    width = model_width(root / WAN_FOLDER / "transformer" / "config.json")
    facts = {p.name: inspect(p, {"wan": width}) for p in folder.iterdir()}
    assert {n: (f.format, f.engine, f.rank, f.problem) for n, f in facts.items()} == {
        "wan_diffusers.safetensors": ("diffusers", "wan", 2, None),
        "wan_comfy.safetensors": ("comfyui", "wan", 2, None),
        "wan_musubi.safetensors": ("musubi", "wan", 2, None),
    }
    assert inspect(folder / "wan_comfy.safetensors", {"wan": 5120}).problem == "lora_wrong_width"


@pytest.mark.parametrize("name", ["wan_diffusers.safetensors", "wan_comfy.safetensors", "wan_musubi.safetensors"])
def test_each_format_changes_the_frames_like_diffusers_own_path_and_comes_off_exactly(
    name, setup, engine, reference, images, plain
):
    root, folder = setup
    with_lora = _run(engine, images, [{"name": name, "weight": 0.8}])
    assert not np.array_equal(with_lora, plain)
    reference.pipe.load_lora_weights(str(folder / name), adapter_name="ref")
    try:
        reference.pipe.set_adapters(["ref"], [0.8])
        assert np.array_equal(_run(reference, images), with_lora)
    finally:
        reference.pipe.delete_adapters("ref")
    assert np.array_equal(_run(engine, images, []), plain)


def test_a_user_lora_stacks_on_the_fast_mode(setup, images, tmp_path):
    root, folder = setup
    from backend.utils.model_registry import wan_lora_path

    lightx2v_style_lora(wan_lora_path(Settings(models_dir=root)), rank=2, seed=9, scale=0.2)
    try:
        gen = WanEngine(Settings(models_dir=root, device="cpu"))
        gen.load()
        fast = {**PARAMS, "fast": True}
        seg = {**SEGMENT, "loras": [{"name": "wan_diffusers.safetensors", "weight": 1.0}]}
        both = gen.generate(*images, "a cat", seg, fast, lambda p: None)
        only_fast = gen.generate(*images, "a cat", SEGMENT, fast, lambda p: None)
        assert not np.array_equal(both, only_fast)
        assert np.array_equal(gen.generate(*images, "a cat", SEGMENT, fast, lambda p: None), only_fast)
    finally:
        wan_lora_path(Settings(models_dir=root)).unlink()


def test_a_user_lora_sits_beside_the_fp8_matmul_layers_and_comes_off_exactly(setup, images, tmp_path):
    """STUDIO_FP8_MATMUL's `Fp8Linear` is an `nn.Linear`: PEFT wraps it (the LoRA in bf16 beside the
    FP8 matmul). The LoRA moves the frames as it does on the bf16 weights, and without it the FP8
    frames come back bit for bit. (bf16 on the CPU here: PyTorch runs `_scaled_mm` there too; the
    studio converts only resident on an Ada/Hopper GPU.)"""
    import torch

    from backend.pipeline.framepack import accel

    root, _ = setup
    lightx2v_style_lora(tmp_path / "strong.safetensors", rank=2, seed=5, scale=10.0)
    gen = WanEngine(Settings(models_dir=root, device="cpu", lora_dir=tmp_path))
    gen.load()
    gen.pipe.transformer.to(torch.bfloat16)
    lora = [{"name": "strong.safetensors", "weight": 1.0}]
    plain_bf16, lora_bf16 = _run(gen, images), _run(gen, images, lora)
    assert accel.convert_fp8_linears(None, min_features=16, within=gen.repeated_blocks()) == 24
    plain_fp8, lora_fp8 = _run(gen, images), _run(gen, images, lora)
    assert np.array_equal(_run(gen, images, []), plain_fp8)

    def moved(a, b):
        return np.abs(a.astype(np.int16) - b).mean()

    assert moved(lora_fp8, plain_fp8) > 4 * moved(plain_fp8, plain_bf16)  # the LoRA, not FP8 rounding
    assert moved(lora_fp8, lora_bf16) < 0.5 * moved(lora_fp8, plain_fp8)  # the same LoRA as on bf16


@pytest.mark.parametrize("placement", ["group_offload", "group_offload_disk"])
def test_layers_streamed_from_ram_or_disk_take_a_lora_and_give_it_back(placement, setup, images, plain, tmp_path):
    """Wan's placements for small GPUs (diffusers' group offload, from pinned RAM or from layer
    files on disk): a LoRA gives the frames it gives resident, and off again the frames of a
    resident engine that never had one. (On the CPU the groups load onto the CPU: the same hooks.)"""
    from diffusers import WanImageToVideoPipeline

    root, folder = setup
    first = [{"name": "wan_musubi.safetensors", "weight": 0.8}]
    then = [{"name": "wan_diffusers.safetensors", "weight": 1.0}, {"name": "wan_comfy.safetensors", "weight": 0.5}]
    resident = WanEngine(Settings(models_dir=root, device="cpu"))
    resident.load()
    want_first, want_then = _run(resident, images, first), _run(resident, images, then)
    gen = WanEngine(Settings(models_dir=tmp_path / "models", device="cpu", lora_dir=folder))
    gen.attach(WanImageToVideoPipeline.from_pretrained(str(root / WAN_FOLDER)), "cpu", placement, "test")
    assert np.array_equal(_run(gen, images, first), want_first)
    assert np.array_equal(_run(gen, images, then), want_then)  # two more files loaded: regrouped again
    assert np.array_equal(_run(gen, images, []), plain)
    assert np.array_equal(_run(gen, images, first), want_first)


def test_with_compiled_blocks_a_lora_is_fused_like_diffusers_fuse_lora_and_comes_off_bit_for_bit(setup, images, plain):
    """Compiled blocks (resident on a GPU) take the LoRA fused into the weights, so they run the
    modules they were compiled for: the frames are diffusers' own fuse_lora path's, and the next job
    without it gets the weights back bit for bit."""
    import torch

    root, folder = setup
    gen = WanEngine(Settings(models_dir=root, device="cpu"))
    gen.load()
    gen.compiled = True  # as on a GPU: the fused path itself needs no compiled code
    transformer = gen.pipe.transformer
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    fused = _run(gen, images, [{"name": "wan_musubi.safetensors", "weight": 0.8}])
    assert gen.loras.fused == [("wan_musubi.safetensors", 0.8)]
    assert not getattr(transformer, "peft_config", None)

    ref = WanEngine(Settings(models_dir=root, device="cpu", lora_dir=root / "none"))
    ref.load()
    ref.pipe.load_lora_weights(str(folder / "wan_musubi.safetensors"), adapter_name="ref")
    ref.pipe.set_adapters(["ref"], [0.8])
    ref.pipe.fuse_lora(components=["transformer"], adapter_names=["ref"])
    ref.pipe.unload_lora_weights()
    assert np.array_equal(_run(ref, images), fused)

    assert np.array_equal(_run(gen, images, []), plain)
    after = transformer.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
