"""End-frame influence and prompts over time on the tiny FramePack of the real architecture (CPU).

Influence 1.0 and a one-piece timed prompt are today's output bit for bit; a lower influence and a
prompt that changes both change the frames; the prompt conditioning handed to each section is the
one its time names (the per-section function is instrumented, not the model).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.contracts.timed_prompts import TimedPiece
from backend.pipeline.framepack import timed_conditioning
from backend.pipeline.framepack.engine import FramePackEngine
from backend.utils.config import Settings
from tests.helpers.tiny_framepack import build_tiny_pipeline

H, W = 64, 96
PARAMS = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
SEGMENT = {"sections": 3, "seed": 7, "end_embed_weights": [0.2, 0.5, 0.8]}
# window 2 at 30 fps: a section is 2 × 4 / 30 s, so 0.27 s is the second section's start.
SECTION_S = 2 * 4 / 30


@pytest.fixture(scope="module")
def engine():
    pipe = build_tiny_pipeline(0)
    pipe.set_progress_bar_config(disable=True)
    gen = FramePackEngine(Settings(framepack_compile="off"))
    gen.attach(pipe, "cpu", mode="cpu")
    return gen


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(4)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def plain(engine, images):
    return engine.generate(*images, "a dog runs", SEGMENT, PARAMS, lambda p: None)


def test_influence_one_is_todays_output_and_lower_changes_it(engine, images, plain):
    same = engine.generate(*images, "a dog runs", {**SEGMENT, "end_influence": 1.0}, PARAMS, lambda p: None)
    assert np.array_equal(same, plain)
    weak = engine.generate(*images, "a dog runs", {**SEGMENT, "end_influence": 0.3}, PARAMS, lambda p: None)
    assert weak.shape == plain.shape and not np.array_equal(weak, plain)


def test_one_timed_prompt_equals_the_plain_prompt(engine, images, plain):
    for text in ("[0s: a dog runs]", "[0.5s: a dog runs]"):
        assert np.array_equal(engine.generate(*images, text, SEGMENT, PARAMS, lambda p: None), plain)


def test_each_section_gets_its_prompt(engine, images, plain, monkeypatch):
    seen: list[tuple[list, tuple]] = []
    real = timed_conditioning.section_prompt

    def recording(prompts, mix):
        out = real(prompts, mix)
        seen.append((mix, out))
        return out

    monkeypatch.setattr(timed_conditioning, "section_prompt", recording)
    frames = engine.generate(*images, "[0s: a cat walks] [0.27s: a dog runs]", SEGMENT, PARAMS, lambda p: None)
    assert frames.shape == plain.shape and not np.array_equal(frames, plain)

    pipe = engine.pipe
    with torch.no_grad():
        cat = pipe.encode_prompt(prompt="a cat walks", device=torch.device("cpu"))  # (embeds, pooled, mask)
        dog = pipe.encode_prompt(prompt="a dog runs", device=torch.device("cpu"))
    # Generated end-first: temporal sections 2, 1, 0. Section 1 is where the dog's prompt starts:
    # an even mix of both; section 2 the dog alone; section 0 the cat alone.
    assert [mix for mix, _ in seen] == [[(1, 1.0)], [(0, 0.5), (1, 0.5)], [(0, 1.0)]]
    (_, dog_out), (_, mixed), (_, cat_out) = seen
    for out, ref in ((dog_out, dog), (cat_out, cat)):
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[2]) and torch.equal(out[2], ref[1])
    assert torch.allclose(mixed[0], 0.5 * cat[0] + 0.5 * dog[0])
    assert torch.allclose(mixed[2], 0.5 * cat[1] + 0.5 * dog[1])
    assert torch.equal(mixed[1], torch.maximum(cat[2], dog[2]))


def test_schedule_snaps_and_blends_one_section():
    pieces = [TimedPiece(0, "a"), TimedPiece(0.3, "b"), TimedPiece(1.0, "c")]
    # Starts snap to the nearest section: 0, 1 (0.3 s = 1.125 sections), 4 (1.0 s = 3.75).
    mixes = timed_conditioning.schedule(pieces, 5, SECTION_S)
    assert mixes == [[(0, 1.0)], [(0, 0.5), (1, 0.5)], [(1, 1.0)], [(1, 1.0)], [(1, 0.5), (2, 0.5)]]
    # A first prompt that starts late still holds the sections before it.
    assert timed_conditioning.schedule([TimedPiece(0.6, "a")], 3, SECTION_S) == [[(0, 1.0)]] * 3
