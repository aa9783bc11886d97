"""Every engine is a declared spec (contracts/engines.EngineSpec) that states every field, and the
FramePack spec reproduces the lengths and slider values jobs have always had."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from backend.contracts import messages
from backend.contracts.engine_specs import EngineSpec, FrameRule, Licence, MemoryNeed, SliderEffect
from backend.contracts.models import JobSettings
from backend.jobs import params as smart_params
from backend.pipeline.engines import REGISTRY, engine_spec
from backend.pipeline.framepack.residency import PROFILES, plan_for_profile
from tests.helpers.server import ROOT

SPECS = [registered.spec for registered in REGISTRY.values()]


def test_the_registry_holds_every_engine_under_its_own_name():
    assert list(REGISTRY) == ["framepack", "wan", "morph"]
    assert all(name == registered.spec.name for name, registered in REGISTRY.items())
    with pytest.raises(ValueError):
        engine_spec("sora")


def test_a_spec_must_state_every_field():
    for model in (EngineSpec, Licence, MemoryNeed, FrameRule, SliderEffect):
        missing = [name for name, field in model.model_fields.items() if not field.is_required()]
        assert missing == [], f"{model.__name__} has defaults, so an engine could leave {missing} unsaid"
    framepack = engine_spec("framepack").model_dump()
    del framepack["licence"]
    with pytest.raises(ValidationError, match="licence"):
        EngineSpec(**framepack)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_spec_says_its_texts_through_the_catalogue(spec):
    codes = [spec.label, spec.licence.name] + ([spec.licence.note] if spec.licence.note else [])
    for code in codes:
        assert code in messages.CATALOGUE, code
        assert code in messages.NOTES, code  # shown, never an HTTP error
    assert spec.licence.url is None or spec.licence.url.startswith("https://")
    assert spec.disk_gb >= 0 and spec.native_fps > 0
    for need in spec.memory:
        assert need.vram_gb > 0 and need.ram_gb > 0, need


def test_framepack_s_licence_names_the_territories_its_text_excludes():
    licence = engine_spec("framepack").licence
    assert licence.excluded == ("EU", "GB", "KR")
    assert licence.url == "https://huggingface.co/tencent/HunyuanVideo/blob/main/LICENSE"
    en, ko = (messages.render(licence.note, lang) for lang in ("en", "ko"))
    for place in ("European Union", "United Kingdom", "South Korea", "HunyuanVideo", "not legal advice"):
        assert place in en, place
    for place in ("유럽연합", "영국", "대한민국", "HunyuanVideo", "법률 자문이 아닙니다"):
        assert place in ko, place
    morph = engine_spec("morph")
    assert morph.licence.url is None and morph.licence.excluded == () and morph.disk_gb == 0 and morph.memory == ()


def test_framepack_s_memory_needs_are_the_plans_its_planner_gives_those_machines():
    """The smallest machine each plan is declared for gets that plan from `plan_residency`."""
    needs = {need.plan: need for need in engine_spec("framepack").memory}
    assert set(needs) == {"resident", "partial", "offload"}
    assert plan_for_profile("a100-40gb", 640).mode == "resident" and needs["resident"].vram_gb == 40
    assert (
        plan_for_profile("gpu-8gb", 640).mode == "partial" and needs["partial"].vram_gb == PROFILES["gpu-8gb"].vram_gib
    )
    assert plan_for_profile("laptop-6gb", 640).mode == "offload"
    assert needs["offload"].vram_gb == PROFILES["laptop-6gb"].vram_gib
    assert needs["offload"].ram_gb == PROFILES["laptop-6gb"].ram_gib == needs["partial"].ram_gb


# Today's lengths (README: sections = max(1, round(seconds × 30 / 36)), frames = sections × 36 + 1).
TODAY = [(0.5, 1, 37), (1.2, 1, 37), (1.8, 2, 73), (2.4, 2, 73), (3.0, 2, 73), (3.6, 3, 109), (5, 4, 145), (10, 8, 289)]


@pytest.mark.parametrize(("seconds", "sections", "frames"), TODAY)
def test_framepack_s_frame_rule_gives_today_s_counts(seconds, sections, frames):
    spec = engine_spec("framepack")
    assert spec.native_fps == 30
    assert spec.frames.blocks_for(seconds, spec.native_fps) == sections
    assert spec.frames.frames(sections) == frames and spec.frames.accepts(frames)
    assert not spec.frames.accepts(frames - 1) and not spec.frames.accepts(frames + 1)
    for engine in ("framepack", "morph"):  # morph previews FramePack's lengths
        segment = smart_params.resolve(JobSettings(seconds=seconds, seed=1), 1, engine=engine)["segments"][0]
        assert (segment["sections"], segment["frames"]) == (sections, frames)


def test_a_wan_style_rule_fits_the_same_shape():
    """4k + 1 frames at 16 fps, at most 81 (one window): what the next engine will declare."""
    rule = FrameRule(block=4, min_blocks=1, max_blocks=20)
    assert rule.frames(rule.blocks_for(5.0, 16)) == 81
    assert rule.frames(rule.blocks_for(12.0, 16)) == 81  # capped at the window
    assert rule.frames(rule.blocks_for(0.1, 16)) == 5
    assert rule.accepts(81) and not rule.accepts(85) and not rule.accepts(80)


def test_the_slider_mapping_gives_today_s_params():
    spec = engine_spec("framepack")
    steps = spec.slider("quality", "steps")
    assert [steps.at(q) for q in (0, 29, 30, 70, 100)] == [8, 13, 13, 20, 25]
    assert [smart_params.CRF.at(q) for q in (0, 70, 100)] == [28, 20, 16]
    for quality in range(0, 101):
        resolved = smart_params.resolve(JobSettings(quality=quality, seed=1), 2, engine="framepack")
        assert resolved["steps"] == steps.at(quality) and resolved["crf"] == smart_params.CRF.at(quality)
        assert resolved["cache"] == ("magcache:0.15:4:0.2" if quality < 30 else "off")
    with pytest.raises(ValueError):
        spec.slider("strength", "end_embed_weights").at(50)  # not linear: its rule says how


@pytest.mark.parametrize("engine", list(REGISTRY))
def test_every_mapped_parameter_is_one_the_job_gets(engine):
    resolved = smart_params.resolve(JobSettings(seed=1), 2, engine=engine)
    given = set(resolved) | set(resolved["segments"][0])
    for effect in smart_params.slider_mapping(engine):
        assert effect.param in given, (engine, effect.param)
        assert effect.rule


def test_using_morph_imports_nothing_of_framepack_s_engine():
    """The registry's factories import an engine's module on first use only: a morph job never
    loads FramePack's loader (nor torch)."""
    code = (
        "import sys; from backend.pipeline.engines import Engines; from backend.utils.config import Settings; "
        "e = Engines(Settings(device='cpu')); e.get('morph'); e.spec('framepack'); "
        "print(sorted(e._engines), 'backend.pipeline.framepack.loading' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['morph']", "False", "False"], out.stdout + out.stderr


def test_wans_licence_links_the_configured_models_page(tmp_path):
    from backend.pipeline.engines import Engines
    from backend.utils.config import Settings

    for model, repo in (
        ("wan2.1-flf2v", "Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers"),
        ("wan2.2-i2v-a14b", "Wan-AI/Wan2.2-I2V-A14B-Diffusers"),
    ):
        engines = Engines(Settings(models_dir=tmp_path, data_dir=tmp_path / "data", wan_model=model))
        assert engines.spec("wan").licence.url == f"https://huggingface.co/{repo}"
        assert engines.spec("wan").licence.note == "licence_note_wan"
    assert engines.spec("framepack") == engine_spec("framepack")
