"""The Wan engine with its second model, Wan 2.2 I2V A14B (STUDIO_WAN_MODEL=wan2.2-i2v-a14b), on a
tiny random pipeline of that architecture (two experts, `boundary_ratio`, no image encoder) saved in
diffusers layout and loaded through the studio's own loader.

diffusers 0.42.1's `WanImageToVideoPipeline` takes `last_image` with Wan 2.2's experts: the
condition video is [first, zeros, last] encoded by the VAE and the mask keeps both ends; the CLIP
embedding step is skipped because the experts have no `image_dim`. So first+last frame works through
the same call as Wan 2.1 FLF2V. The studio's frames must equal the plain pipeline's (fp32, CPU), the
fast mode puts one LoRA on each expert, and the tiny models' config keys match the published ones.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from backend.contracts.models import JobSettings
from backend.jobs import params as smart_params
from backend.pipeline.wan import wan_spec as spec
from backend.pipeline.wan.wan_engine import WanEngine, WanFastModeMissing
from backend.utils.config import Settings
from backend.utils.model_registry import WAN22, wan_lora_paths
from tests.helpers.tiny_wan import (
    BOUNDARY_RATIO,
    lightx2v_style_lora,
    plain_frames,
    save_tiny_pipeline,
    save_tiny_wan22_pipeline,
)

H, W = 32, 48
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wan"


def settings_for(root: Path) -> Settings:
    return Settings(models_dir=root, device="cpu", wan_model=WAN22.key)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan22-models")
    save_tiny_wan22_pipeline(root / WAN22.folder)
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    gen = WanEngine(settings_for(models_dir))
    gen.load()
    return gen


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def job(quality: int, seconds: float = 0.5, seed: int = 7) -> dict:
    return smart_params.resolve(
        JobSettings(seconds=seconds, quality=quality, seed=seed), 1, [(W, H), (W, H)], engine="wan", wan_model=WAN22.key
    )


plain = partial(plain_frames, height=H, width=W)  # what diffusers itself makes


def calls_per_expert(pipe) -> dict:
    """Counts each expert's forward passes (a hook per transformer)."""
    counts = {"transformer": 0, "transformer_2": 0}
    for name in counts:

        def hook(_m, _a, _o, name=name):
            counts[name] += 1

        getattr(pipe, name).register_forward_hook(hook)
    return counts


def test_the_studio_loads_both_experts_and_its_first_last_frames_equal_the_plain_pipeline(engine, images):
    from diffusers import WanImageToVideoPipeline

    assert engine.pipe.transformer_2 is not None and engine.pipe.image_encoder is None
    assert engine.pipe.config.boundary_ratio == BOUNDARY_RATIO
    assert engine.describe()["model"] == WAN22.key

    first, last = images
    p = job(quality=30)
    assert p["wan_model"] == WAN22.key and p["guidance"] == WAN22.guidance and not p["fast"]
    p["steps"] = 2  # with flow shift 5: t = 999 (high-noise expert), 833 (low-noise expert)
    seg = p["segments"][0]
    counts = calls_per_expert(engine.pipe)
    frames = engine.generate(first, last, "a cat walks", seg, p, lambda _r: None)
    assert frames.shape == (seg["frames"], H, W, 3) and frames.dtype == np.uint8
    assert counts["transformer"] > 0 and counts["transformer_2"] > 0  # both experts sampled

    reference = WanImageToVideoPipeline.from_pretrained(str(engine.settings.models_dir / WAN22.folder))
    reference.set_progress_bar_config(disable=True)
    expected = plain(reference, first, last, "a cat walks", seg["frames"], 2, WAN22.guidance, seg["seed"])
    np.testing.assert_array_equal(frames, expected)
    # The last image conditions the take: without it the same seed makes other frames.
    first_only = plain(reference, first, None, "a cat walks", seg["frames"], 2, WAN22.guidance, seg["seed"])
    assert np.abs(first_only.astype(int) - expected.astype(int)).max() > 1


def test_fast_mode_puts_one_lora_on_each_expert_and_matches_the_pipeline_with_them(models_dir, images, tmp_path):
    import shutil

    import torch
    from diffusers import WanImageToVideoPipeline
    from diffusers.loaders import WanLoraLoaderMixin

    root = tmp_path / "models"
    shutil.copytree(models_dir, root, symlinks=True)
    settings = settings_for(root)
    files = wan_lora_paths(settings)
    assert list(files) == ["transformer", "transformer_2"]
    gen = WanEngine(settings)
    first, last = images
    p = job(quality=10)
    assert p["fast"] and p["steps"] == spec.FAST_STEPS and p["guidance"] == spec.FAST_GUIDANCE
    seg = p["segments"][0]

    lightx2v_style_lora(files["transformer"], seed=1, image_branch=False)
    gen.load()
    assert gen.lora is None  # one file of two: no fast mode
    with pytest.raises(WanFastModeMissing) as caught:
        gen.generate(first, last, "a dog", seg, p, lambda _r: None)
    assert "--only wan22" in caught.value.text("en") and files["transformer_2"].name in caught.value.text("ko")
    gen.release()

    lightx2v_style_lora(files["transformer_2"], seed=2, image_branch=False)
    gen.load()
    assert gen.lora is not None and gen.lora.layers == 2 * (2 * 10)  # per expert: 2 blocks × (8 attn + 2 ffn)
    fast = gen.generate(first, last, "a dog runs", seg, p, lambda _r: None)
    assert not gen.lora.enabled

    reference = WanImageToVideoPipeline.from_pretrained(str(root / WAN22.folder))
    reference.set_progress_bar_config(disable=True)
    without = plain(reference, first, last, "a dog runs", seg["frames"], 4, 1.0, seg["seed"])
    with torch.no_grad():
        for attr, path in files.items():
            converted = WanLoraLoaderMixin.lora_state_dict(str(path))
            modules = dict(getattr(reference, attr).named_modules())
            for key, a in converted.items():
                if key.endswith("lora_A.weight"):
                    name = key[len("transformer.") : -len(".lora_A.weight")]
                    modules[name].weight += converted[f"transformer.{name}.lora_B.weight"] @ a
                    modules[name].bias += converted[f"transformer.{name}.lora_B.bias"]
    merged = plain(reference, first, last, "a dog runs", seg["frames"], 4, 1.0, seg["seed"])
    assert np.abs(fast.astype(int) - merged.astype(int)).max() <= 1
    assert np.abs(fast.astype(int) - without.astype(int)).max() > 1


def test_not_installed_names_the_wan22_install_command(tmp_path):
    state = WanEngine(settings_for(tmp_path)).describe()
    assert state["installed"] is False and state["model"] == WAN22.key
    assert "--only wan22" in state["fix"] and WAN22.label in state["reason"] and WAN22.label in state["reason_ko"]


@pytest.mark.parametrize(
    ("fixture", "save", "folders", "clip_branch"),
    [
        ("wan21_flf2v_transformer_config.json", save_tiny_pipeline, ["transformer"], True),
        ("wan22_i2v_a14b_transformer_config.json", save_tiny_wan22_pipeline, ["transformer", "transformer_2"], False),
    ],
)
def test_the_tiny_models_config_keys_match_the_published_configs(tmp_path, fixture, save, folders, clip_branch):
    """Same class, same config keys, same structural values as the real model (only widths and
    depths are tiny); the fixture notes where its values come from."""
    real = json.loads((FIXTURES / fixture).read_text(encoding="utf-8"))
    save(tmp_path / "m")
    structural = ("_class_name", "in_channels", "out_channels", "patch_size", "qk_norm", "cross_attn_norm", "eps")
    for folder in folders:
        tiny = json.loads((tmp_path / "m" / folder / "config.json").read_text(encoding="utf-8"))
        assert {k for k in tiny if not k.startswith("_")} == {k for k in real if not k.startswith("_")}
        assert {k: tiny[k] for k in structural} == {k: real[k] for k in structural}
        for key in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
            assert (tiny[key] is not None) == clip_branch and (real[key] is not None) == clip_branch


def test_a_user_lora_goes_onto_both_experts_like_diffusers_own_path(models_dir, images, tmp_path):
    """A chosen LoRA acts over the whole clip: on the high-noise expert and on the low-noise one
    (`load_into_transformer_2`), equal to diffusers' own two loads + `set_adapters`; off again, the
    frames of no LoRA."""
    from diffusers import WanImageToVideoPipeline

    from tests.helpers import lora_formats

    pipe_for_names = WanImageToVideoPipeline.from_pretrained(str(models_dir / WAN22.folder))
    lora_formats.diffusers_lora(
        pipe_for_names.transformer, lora_formats.WAN_DIFFUSERS_MODULES, tmp_path / "both.safetensors"
    )
    gen = WanEngine(Settings(models_dir=models_dir, device="cpu", wan_model=WAN22.key, lora_dir=tmp_path))
    gen.load()
    p = job(quality=40)
    p["steps"] = 2
    seg = p["segments"][0]
    run = lambda loras=None: gen.generate(  # noqa: E731
        *images, "a cat", {**seg, "loras": loras} if loras is not None else seg, p, lambda _p: None
    )
    none = run()
    with_lora = run([{"name": "both.safetensors", "weight": 0.9}])
    assert not np.array_equal(with_lora, none)
    for expert in gen.transformers():
        assert len(expert.peft_config) == 1, "the LoRA is on both experts"

    ref = WanImageToVideoPipeline.from_pretrained(str(models_dir / WAN22.folder))
    ref.set_progress_bar_config(disable=True)
    ref.load_lora_weights(str(tmp_path / "both.safetensors"), adapter_name="ref")
    ref.load_lora_weights(str(tmp_path / "both.safetensors"), adapter_name="ref", load_into_transformer_2=True)
    ref.set_adapters(["ref"], [0.9])
    want = plain(ref, *images, "a cat", seg["frames"], 2, WAN22.guidance, seg["seed"])
    assert np.array_equal(with_lora, want)
    assert np.array_equal(run([]), none)

    # With compiled blocks (as on a GPU) the LoRA is fused into both experts, as diffusers' own
    # fuse_lora does it, and comes off exactly.
    gen.compiled = True
    fused = run([{"name": "both.safetensors", "weight": 0.9}])
    assert gen.loras.fused and not any(getattr(t, "peft_config", None) for t in gen.transformers())
    ref.fuse_lora(components=["transformer", "transformer_2"], adapter_names=["ref"])
    ref.unload_lora_weights()
    assert np.array_equal(fused, plain(ref, *images, "a cat", seg["frames"], 2, WAN22.guidance, seg["seed"]))
    assert np.array_equal(run([]), none)
