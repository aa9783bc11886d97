"""The fast mode: MagCache's calibration, its skip decisions, and a job on the tiny FramePack model.

The tiny model is the real architecture with random weights, saved in diffusers layout and loaded
through the studio's own `load()` (fixture `tiny_framepack_dir`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from backend.contracts.models import JobSettings
from backend.jobs.params import DRAFT_CACHE, resolve
from backend.pipeline.framepack.engine import FramePackEngine
from backend.pipeline.framepack.magcache import (
    FRAMEPACK_MAG_RATIOS,
    MagCacheConfig,
    mag_ratios,
    parse_cache,
    skip_pattern,
)
from backend.utils.config import Settings
from tests.helpers.server import ROOT


def _marks(pattern) -> str:
    return "".join("s" if s else "." for s in pattern)


def test_the_calibration_is_returned_as_published_at_25_steps():
    assert mag_ratios(25) == list(FRAMEPACK_MAG_RATIOS)
    assert len(FRAMEPACK_MAG_RATIOS) == 25 and FRAMEPACK_MAG_RATIOS[0] == 1.0


def test_a_coarser_schedule_compounds_the_ratios_its_steps_span():
    # 5 steps sit at calibrated positions 0, 5, 10, 15, 20: each ratio is the product of the five
    # published ratios its step spans.
    coarse = mag_ratios(5)
    for i in range(1, 5):
        assert coarse[i] == pytest.approx(math.prod(FRAMEPACK_MAG_RATIOS[5 * (i - 1) + 1 : 5 * i + 1]), rel=1e-12)
    # Off the calibrated positions the log-magnitude curve is interpolated linearly: the product of
    # all ratios is the curve's value at the last step's position, (N-1)/N of the way along.
    for steps in (8, 11, 13):
        curve_end = (steps - 1) * 25 / steps
        k = int(curve_end)
        logs = np.log(FRAMEPACK_MAG_RATIOS[1:])
        expected = logs[:k].sum() + (curve_end - k) * logs[k]
        assert math.log(math.prod(mag_ratios(steps))) == pytest.approx(expected, rel=1e-9)


def test_skip_patterns_follow_from_the_ratios_alone():
    # 25 steps, the two settings the authors published for FramePack: 13 and 14 of 25 forwards
    # skipped, i.e. 2.08x and 2.27x fewer forwards (their measured speed-ups: 2.07x and 2.25x).
    assert _marks(skip_pattern(25, MagCacheConfig(0.10, 3, 0.2))) == ".....ss.s.ss.ss.ss.sss.s."
    assert _marks(skip_pattern(25, MagCacheConfig(0.15, 4, 0.2))) == ".....ss.ss.sss.sss.ssss.."
    # The studio's fast mode at the quality slider's step counts (8 at quality 0 … 13 at 29).
    draft = parse_cache(DRAFT_CACHE)
    assert draft == MagCacheConfig(0.15, 4, 0.2)
    assert {n: _marks(skip_pattern(n, draft)) for n in range(8, 14)} == {
        8: ".....s.s",
        9: "....s..s.",
        10: ".....ss.s.",
        11: ".....ss.ss.",
        12: "..s..s.ss.s.",
        13: "...s..ss.sss.",
    }
    # Threshold 0 skips only where the calibration says nothing changes (step 19's ratio is 1.0);
    # K = 0 never skips; the first step never skips.
    assert [i for i, s in enumerate(skip_pattern(25, MagCacheConfig(0.0, 3, 0.2))) if s] == [19]
    assert not any(skip_pattern(25, MagCacheConfig(1.0, 0, 0.0)))
    assert not skip_pattern(25, MagCacheConfig(10.0, 25, 0.0))[0]


def test_cache_values_parse_and_bad_ones_are_refused():
    assert parse_cache("off") is None
    assert parse_cache("magcache:0.1") == MagCacheConfig(0.1, 3, 0.2)
    assert parse_cache("magcache:0.25:5:0.1") == MagCacheConfig(0.25, 5, 0.1)
    assert parse_cache(MagCacheConfig(0.25, 5, 0.1).cache_value()) == MagCacheConfig(0.25, 5, 0.1)
    # Jobs stored before MagCache replaced First Block Cache re-run in today's fast mode.
    assert parse_cache("first_block_cache:0.12") == parse_cache(DRAFT_CACHE)
    for bad in ("teacache:0.1", "magcache", "magcache:-1", "magcache:0.1:2:1.5"):
        with pytest.raises(ValueError):
            parse_cache(bad)


def test_the_slider_low_end_is_the_fast_mode():
    low = resolve(JobSettings(quality=0), 1)
    edge = resolve(JobSettings(quality=29), 1)
    high = resolve(JobSettings(quality=30), 1)
    assert (low["cache"], low["draft"], low["steps"]) == (DRAFT_CACHE, True, 8)
    assert (edge["cache"], edge["draft"], edge["steps"]) == (DRAFT_CACHE, True, 13)
    assert (high["cache"], high["draft"]) == ("off", False)


def test_the_pages_fast_mode_hint_starts_where_the_server_s_fast_mode_does():
    import re

    from backend.jobs.params import DRAFT_QUALITY_BELOW

    source = (ROOT / "frontend/js/studio/settings.js").read_text()
    assert int(re.search(r"FAST_MODE_BELOW = (\d+);", source).group(1)) == DRAFT_QUALITY_BELOW


@pytest.fixture(scope="module")
def loaded(tiny_framepack_dir):
    gen = FramePackEngine(Settings(framepack_dir=str(tiny_framepack_dir), device="cpu", framepack_compile="off"))
    gen.load()
    return gen


def _job(gen, cache: str, steps: int, events=None):
    rng = np.random.default_rng(5)
    first = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    last = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    segment = {"sections": 2, "seed": 3, "end_embed_weights": [0.3, 0.7]}
    params = {"steps": steps, "latent_window_size": 3, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": cache}
    return gen.generate(first, last, "a cat walks", segment, params, (events.append if events is not None else print))


class _Counter:
    """Which transformer forwards ran the block stack, and whether the latents decoded were finite."""

    def __init__(self, gen) -> None:
        t = gen.pipe.transformer
        self.forwards: list[bool] = []
        self.finite: list[bool] = []
        self._handles = [
            t.register_forward_pre_hook(lambda *_: self.forwards.append(False)),
            t.transformer_blocks[0].register_forward_pre_hook(lambda *_: self._ran()),
        ]
        self._vae = gen.pipe.vae
        self._decode = self._vae.decode

        def decode(latents, *a, **k):
            self.finite.append(bool(torch.isfinite(latents).all()))
            return self._decode(latents, *a, **k)

        self._vae.decode = decode

    def _ran(self) -> None:
        self.forwards[-1] = True

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        del self._vae.decode


@pytest.mark.parametrize("steps", [8, 13])
def test_a_fast_job_skips_exactly_its_pattern_and_stays_finite(loaded, steps):
    gen = loaded
    full = _job(gen, "off", steps)
    counter = _Counter(gen)
    try:
        events = []
        fast = _job(gen, DRAFT_CACHE, steps, events)
    finally:
        counter.close()
    pattern = skip_pattern(steps, parse_cache(DRAFT_CACHE))
    expected_ran = [not s for s in pattern] * 2  # two sections, each from fresh noise
    assert counter.forwards == expected_ran
    assert gen.last_cache.sections == [[i for i, s in enumerate(pattern) if s]] * 2
    assert all(counter.finite) and len(counter.finite) == 2
    assert fast.shape == full.shape
    diff = np.abs(fast.astype(np.int16) - full.astype(np.int16))
    assert diff.max() > 0  # skipped steps are estimates: the output is not the full model's
    assert diff.mean() < 64  # but the same video, not noise
    # Progress still reports every step (skipped ones too) and every section's preview.
    steps_seen = [(e.detail["section"], e.detail["step"]) for e in events if "preview_frames" not in e.detail]
    assert steps_seen == [(s, i) for s in (1, 2) for i in range(1, steps + 1)]
    # Afterwards the model is as before: plain block lists, and an uncached job is bit-exact again.
    t = gen.pipe.transformer
    assert type(t.transformer_blocks) is nn.ModuleList and type(t.single_transformer_blocks) is nn.ModuleList
    assert np.array_equal(_job(gen, "off", steps), full)


def test_true_cfg_keeps_a_residual_per_branch(loaded):
    gen = loaded
    rng = np.random.default_rng(1)
    first = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    last = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    segment = {"sections": 1, "seed": 3, "end_embed_weights": [0.5]}
    params = {"steps": 8, "latent_window_size": 3, "distilled_guidance": 10.0, "true_cfg": 3.0, "cache": DRAFT_CACHE}
    counter = _Counter(gen)
    try:
        frames = gen.generate(first, last, "a cat walks", segment, params, lambda p: None)
    finally:
        counter.close()
    pattern = skip_pattern(8, parse_cache(DRAFT_CACHE))
    assert counter.forwards == [ran for s in pattern for ran in (not s, not s)]  # cond + uncond per step
    assert frames.shape == (1 * 3 * 4 + 1, 64, 64, 3)


def test_code_that_lists_the_blocks_sees_the_modules_inside_a_cached_forward(loaded):
    """The fp32 re-run of an overflowing section makes the compiled blocks eager from inside a
    forward (`accel.eager_blocks`): it must reach the real blocks, not the cache's stand-ins."""
    from backend.pipeline.framepack import accel
    from backend.pipeline.framepack.magcache import MagCache

    t = loaded.pipe.transformer
    real = accel.blocks(t)
    cache = MagCache(parse_cache(DRAFT_CACHE), 8)
    with cache.attached(t):
        cache.section_start()
        with cache.forward(0):
            assert accel.blocks(t) == real and all(isinstance(b, nn.Module) for b in real)
    assert accel.blocks(t) == real
