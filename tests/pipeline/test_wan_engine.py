"""The Wan engine on a tiny random `WanImageToVideoPipeline` of the real architecture, saved in
diffusers layout under the models folder and loaded through the studio's own loader.

The studio's frames must equal the plain diffusers pipeline's for the same seed and inputs (fp32,
CPU), for the full path and for the fast mode's settings with the distillation LoRA; a cancel stops
within one step; missing files say how to install.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from backend.contracts.models import JobSettings
from backend.jobs import params as smart_params
from backend.pipeline.wan import wan_spec as spec
from backend.pipeline.wan.wan_engine import WanEngine, WanFastModeMissing
from backend.utils.config import Settings
from backend.utils.model_registry import WAN_FOLDER, wan_lora_path
from backend.utils.progress import JobCancelled, Progress
from tests.helpers.tiny_wan import lightx2v_style_lora, plain_frames, save_tiny_pipeline

H, W = 32, 48


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan-models")
    save_tiny_pipeline(root / WAN_FOLDER)
    return root


@pytest.fixture(scope="module")
def engine(models_dir):
    gen = WanEngine(Settings(models_dir=models_dir, device="cpu"))
    gen.load()
    return gen


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(3)
    first = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    last = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return first, last


def job(quality: int, seconds: float = 0.5, seed: int = 11) -> dict:
    return smart_params.resolve(
        JobSettings(seconds=seconds, quality=quality, seed=seed), 1, [(W, H), (W, H)], engine="wan"
    )


plain = partial(plain_frames, height=H, width=W)  # what diffusers itself makes


def test_the_studio_frames_equal_the_plain_pipeline(engine, images):
    from diffusers import WanImageToVideoPipeline

    first, last = images
    p = job(quality=30)  # the full path's lowest: 20 steps; 2 suffice for the equality
    p["steps"] = 2
    seg = p["segments"][0]
    seen: list[Progress] = []
    frames = engine.generate(first, last, "a cat walks", seg, p, seen.append)
    assert frames.dtype == np.uint8 and frames.shape == (seg["frames"], H, W, 3)
    assert engine.placement == "cpu" and engine.lora is None

    reference = WanImageToVideoPipeline.from_pretrained(str(engine.settings.models_dir / WAN_FOLDER))
    reference.set_progress_bar_config(disable=True)
    expected = plain(reference, first, last, "a cat walks", seg["frames"], 2, spec.GUIDANCE, seg["seed"])
    np.testing.assert_array_equal(frames, expected)

    steps = [r.detail for r in seen if r.stage == "generate" and "step" in r.detail]
    assert [(d["step"], d["steps"]) for d in steps] == [(1, 2), (2, 2)]


def test_a_cancel_stops_within_one_step(engine, images):
    first, last = images
    p = job(quality=30)
    p["steps"] = 5
    calls = []

    def progress(record: Progress) -> None:
        if "step" in record.detail:
            calls.append(record.detail["step"])
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        engine.generate(first, last, "a cat", p["segments"][0], p, progress)
    assert calls == [1]  # the first step's report raised; no second step ran


def test_fast_mode_loads_the_published_lora_keys_and_matches_the_pipeline_with_it(models_dir, images, tmp_path):
    """A LoRA with LightX2V's key names (random values in the tiny shapes) goes through the
    same loader; the fast mode's frames equal diffusers' pipeline with the same deltas applied to
    its weights, and differ from the frames without the LoRA."""
    import shutil

    import torch
    from diffusers import WanImageToVideoPipeline
    from diffusers.loaders import WanLoraLoaderMixin

    root = tmp_path / "models"
    shutil.copytree(models_dir, root, symlinks=True)
    settings = Settings(models_dir=root, device="cpu")
    lora_file = lightx2v_style_lora(wan_lora_path(settings))
    gen = WanEngine(settings)
    gen.load()
    assert gen.lora is not None and gen.lora.layers == 2 * 12  # q k v o twice, k_img v_img, ffn 0/2

    first, last = images
    p = job(quality=10)
    assert p["fast"] and p["steps"] == spec.FAST_STEPS and p["guidance"] == spec.FAST_GUIDANCE
    seg = p["segments"][0]
    fast = gen.generate(first, last, "a dog runs", seg, p, lambda _r: None)
    assert not gen.lora.enabled  # switched off after its job

    # The reference: diffusers' own conversion of the file, merged into a plain pipeline's weights.
    reference = WanImageToVideoPipeline.from_pretrained(str(root / WAN_FOLDER))
    reference.set_progress_bar_config(disable=True)
    without = plain(reference, first, last, "a dog runs", seg["frames"], 4, 1.0, seg["seed"])
    full = job(quality=30)
    full["steps"] = 2
    full_seg = full["segments"][0]
    plain_full = plain(reference, first, last, "a cat walks", full_seg["frames"], 2, 5.0, full_seg["seed"])
    converted = WanLoraLoaderMixin.lora_state_dict(str(lora_file))
    modules = dict(reference.transformer.named_modules())
    with torch.no_grad():
        for key, a in converted.items():
            if not key.endswith("lora_A.weight"):
                continue
            name = key[len("transformer.") : -len(".lora_A.weight")]
            modules[name].weight += converted[f"transformer.{name}.lora_B.weight"] @ a
            modules[name].bias += converted[f"transformer.{name}.lora_B.bias"]
    merged = plain(reference, first, last, "a dog runs", seg["frames"], 4, 1.0, seg["seed"])
    assert not np.array_equal(merged, without)
    # Hook (x·Aᵀ·Bᵀ) vs merged weight (W + BA) differ by float rounding only.
    assert np.abs(fast.astype(int) - merged.astype(int)).max() <= 1
    assert np.abs(fast.astype(int) - without.astype(int)).max() > 1

    # The same engine at full quality runs the untouched weights again.
    again = gen.generate(first, last, "a cat walks", full_seg, full, lambda _r: None)
    np.testing.assert_array_equal(again, plain_full)


def test_fast_mode_without_its_lora_says_how_to_get_it(engine, images):
    first, last = images
    p = job(quality=10)
    with pytest.raises(WanFastModeMissing) as caught:
        engine.generate(first, last, "a cat", p["segments"][0], p, lambda _r: None)
    assert caught.value.code == "wan_fast_lora_missing"
    assert "--only wan" in caught.value.text("en") and "--only wan" in caught.value.text("ko")


def test_frame_rule_and_slider_mapping():
    assert [spec.frames_for(s) for s in (0.1, 1.0, 2.4, 5.0, 5.0625, 9.0)] == [5, 17, 37, 81, 81, 81]
    assert all(spec.is_frame_count(spec.frames_for(s / 10)) for s in range(1, 120))
    assert spec.steps_for(100) == spec.FULL_STEPS and spec.steps_for(30) == 20 and spec.steps_for(29) == 4
    p = job(quality=100, seconds=8.0)
    seg = p["segments"][0]
    assert p["fps"] == 16 and p["engine"] == "wan" and p["guidance"] == 5.0 and not p["fast"]
    assert seg["frames"] == 81 and seg["capped"] and seg["asked_seconds"] == 8.0
    assert p["total_seconds"] == round(81 / 16, 3)
    two = smart_params.resolve(JobSettings(seconds=2.0, quality=70, seed=1), 2, [(W, H)] * 3, engine="wan")
    assert [s["frames"] for s in two["segments"]] == [33, 33] and two["total_frames"] == 65


def test_a_capped_take_warns_in_both_languages(engine, images):
    first, last = images
    p = job(quality=30, seconds=0.5)
    p["steps"] = 1
    seg = dict(p["segments"][0], capped=True, asked_seconds=9.0)
    warnings = []
    engine.generate(
        first, last, "a cat", seg, p, lambda r: warnings.extend([r.detail["warning"]] if "warning" in r.detail else [])
    )
    assert len(warnings) == 1 and "9" in warnings[0] and "초" in warnings[0]


def test_readiness_names_the_install_command_when_files_are_missing(tmp_path, models_dir):
    state = WanEngine(Settings(models_dir=tmp_path, device="cpu")).describe()
    assert state["installed"] is False and state["ready"] is False
    assert "--only wan" in state["fix"] and "--only wan" in state["reason"] and "--only wan" in state["reason_ko"]

    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(models_dir / WAN_FOLDER, broken / WAN_FOLDER)
    for weights in (broken / WAN_FOLDER / "transformer").glob("*.safetensors"):
        weights.unlink()
    state = WanEngine(Settings(models_dir=broken, device="cpu")).describe()
    assert state["installed"] is False and "transformer" in state["reason"]

    ready = WanEngine(Settings(models_dir=models_dir, device="cpu")).describe()
    assert ready["installed"] is True and ready["ready"] is True and ready["loaded"] is False


def test_placement_rule_by_gpu_memory():
    from backend.pipeline.wan.wan_loading import placement_for

    assert placement_for("cpu", None) == "cpu"
    assert placement_for("cuda", 80) == "resident"
    assert placement_for("cuda", 48) == "model_offload"
    assert placement_for("cuda", 24) == "group_offload"
    assert placement_for("cuda", 16) == "group_offload"


def test_blocks_compile_only_resident_on_a_gpu_and_a_lora_job_runs_them_eagerly(models_dir):
    """STUDIO_WAN_COMPILE: never on the CPU or under offloading; `on` without a GPU says why; a job
    with the user's LoRAs runs the compiled blocks eagerly and gives them back afterwards."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("about a machine without a GPU")
    gen = WanEngine(Settings(models_dir=models_dir, device="cpu", wan_compile="on"))
    gen.load()  # placed on the CPU: nothing compiles, `on` or not
    assert gen.compiled is False and gen.describe()["compiled"] is False
    gen.placement = "resident"  # as if on a GPU, but without CUDA
    with pytest.raises(RuntimeError, match="STUDIO_WAN_COMPILE=on but no CUDA GPU"):
        gen._compile()
    gen.settings = Settings(models_dir=models_dir, device="cpu")  # auto: quietly eager
    assert gen._compile() is False

    # As if compiled (what `_compile` does on a GPU: diffusers' regional compile, lazy until a call).
    (transformer,) = gen.transformers()
    transformer.compile_repeated_blocks(dynamic=True)
    gen.compiled = True
    blocks = [m for m in transformer.modules() if type(m).__name__ == "WanTransformerBlock"]
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    with gen.eager_blocks():
        assert all(b._compiled_call_impl is None for b in blocks)
    assert all(b._compiled_call_impl is not None for b in blocks)


def test_a_small_ram_machine_streams_the_layers_from_disk_with_the_same_frames(models_dir, images, tmp_path):
    """Under 40 GiB of VRAM and less host RAM than the model's pinned copy needs, diffusers' group
    offload reads each layer group from a safetensors file (`group_offload_disk`); the frames are
    the plain pipeline's. (On the CPU the layers load onto the CPU: the same hooks and files.)"""
    from diffusers import WanImageToVideoPipeline

    from backend.pipeline.wan.wan_loading import placement_for
    from backend.utils.model_registry import WAN21

    assert placement_for("cuda", 24, ram_gib=32, pinned_ram_min_gib=WAN21.pinned_ram_min_gib) == "group_offload_disk"
    assert placement_for("cuda", 16, ram_gib=128, pinned_ram_min_gib=WAN21.pinned_ram_min_gib) == "group_offload"
    assert placement_for("cuda", 48, ram_gib=32, pinned_ram_min_gib=WAN21.pinned_ram_min_gib) == "model_offload"

    first, last = images
    p = job(quality=30)
    p["steps"] = 2
    seg = p["segments"][0]
    settings = Settings(models_dir=tmp_path / "models", device="cpu")
    gen = WanEngine(settings)
    pipe = WanImageToVideoPipeline.from_pretrained(str(models_dir / WAN_FOLDER))
    gen.attach(pipe, "cpu", "group_offload_disk", "test")
    files = sorted(gen.scratch_dir().glob("transformer/group_*.safetensors"))
    assert len(files) > 10  # one file per layer group
    # A later load rewrites every file: diffusers would read back one that is already there (from
    # the other model, older weights, a load killed mid-write) as this model's layer.
    gen.release()
    files[0].write_bytes(b"left by an earlier load")
    pipe = WanImageToVideoPipeline.from_pretrained(str(models_dir / WAN_FOLDER))
    gen.attach(pipe, "cpu", "group_offload_disk", "test")
    assert files[0].read_bytes() != b"left by an earlier load"
    frames = gen.generate(first, last, "a cat walks", seg, p, lambda _p: None)

    reference = WanImageToVideoPipeline.from_pretrained(str(models_dir / WAN_FOLDER))
    reference.set_progress_bar_config(disable=True)
    expected = plain(reference, first, last, "a cat walks", seg["frames"], 2, spec.GUIDANCE, seg["seed"])
    np.testing.assert_array_equal(frames, expected)
