"""Keyframes inside one transition on the tiny FramePack of the real architecture (CPU).

No keyframe is today's output bit for bit. A keyframe on boundary b enters the section that ends
there (generated section sections - b) as its clean 1x anchor and as its image embedding; the
transformer's inputs are recorded (a forward pre-hook reads them, the model runs unchanged), and the
sections generated before it (temporally after the keyframe) come out bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.pipeline.framepack import section_keyframes as fp_keyframes
from backend.pipeline.framepack.engine import FramePackEngine
from backend.utils.config import Settings
from tests.helpers.tiny_framepack import build_tiny_pipeline

H, W = 64, 96
PARAMS = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
SEGMENT = {"sections": 3, "seed": 7, "end_embed_weights": [0.2, 0.5, 0.8]}
FRAMES_PER_SECTION = 2 * 4  # window 2: 8 pixel frames a section


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
    return tuple(rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(3))  # first, last, keyframe


def recorded(engine, *args, **kwargs):
    """The frames and, per transformer forward, (clean latents, image embeds) as the model got them."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(_module, _args, inputs):
        calls.append((inputs["latents_clean"].detach().clone(), inputs["image_embeds"].detach().clone()))

    handle = engine.pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        frames = engine.generate(*args, **kwargs)
    finally:
        handle.remove()
    return frames, calls


@pytest.fixture(scope="module")
def plain(engine, images):
    return recorded(engine, images[0], images[1], "a dog runs", SEGMENT, PARAMS, lambda p: None)


def test_no_keyframe_is_todays_output(engine, images, plain):
    again = engine.generate(images[0], images[1], "a dog runs", {**SEGMENT, "keyframes": []}, PARAMS, lambda p: None)
    assert np.array_equal(again, plain[0])
    same = engine.generate(images[0], images[1], "a dog runs", SEGMENT, PARAMS, lambda p: None, keyframes=())
    assert np.array_equal(same, plain[0])


@pytest.mark.parametrize("point", [1, 2])
def test_keyframe_latent_enters_the_section_that_ends_on_it(engine, images, plain, point):
    first, last, key = images
    seg = {**SEGMENT, "keyframes": [{"image": "k", "at": 0.3, "point": point, "lands_at": 0.3}]}
    frames, calls = recorded(engine, first, last, "a dog runs", seg, PARAMS, lambda p: None, keyframes=(key,))
    _, plain_calls = plain
    steps = PARAMS["steps"]
    assert len(calls) == len(plain_calls) == SEGMENT["sections"] * steps

    # What the keyframe encodes to, computed here the way the engine is told to (its own generator).
    pipe = engine.pipe
    with torch.no_grad():
        expected = fp_keyframes.encode_keyframes(
            pipe, [key], [point], 3, height=H, width=W, seed=7, device=torch.device("cpu")
        )
    target = SEGMENT["sections"] - point  # generated end-first
    anchor, embed = expected.anchors[target], expected.embeds[target]
    for g in range(SEGMENT["sections"]):
        for clean, image_embeds in (c for c in calls[g * steps : (g + 1) * steps]):
            # latents_clean = [first image, the 1x anchor]; the anchor is the keyframe only in its section
            if g == target:
                assert torch.equal(clean[:, :, 1:2], anchor.to(clean.dtype))
                assert torch.equal(image_embeds, embed)
            else:
                assert not torch.equal(clean[:, :, 1:2], anchor.to(clean.dtype))
                assert not torch.equal(image_embeds, embed)
    # Sections sampled before the keyframe's (temporally after it) saw exactly today's inputs and
    # made today's frames; the keyframe's section changed.
    for i in range(target * steps):
        assert torch.equal(calls[i][0], plain_calls[i][0]) and torch.equal(calls[i][1], plain_calls[i][1])
    assert not torch.equal(calls[target * steps][0], plain_calls[target * steps][0])
    # In frames: a section after the boundary is decoded with this section's latents as context and
    # blended across, so the frames from one section past the boundary on are today's.
    assert frames.shape == plain[0].shape
    boundary = point * FRAMES_PER_SECTION
    assert np.array_equal(frames[boundary + FRAMES_PER_SECTION :], plain[0][boundary + FRAMES_PER_SECTION :])
    assert not np.array_equal(frames[:boundary], plain[0][:boundary])


def test_a_keyframe_must_land_between_sections(engine, images):
    seg = {**SEGMENT, "keyframes": [{"image": "k", "at": 3.0, "point": 3, "lands_at": 3.0}]}
    with pytest.raises(ValueError, match="boundary"):
        engine.generate(images[0], images[1], "a dog", seg, PARAMS, lambda p: None, keyframes=(images[2],))
    with pytest.raises(ValueError, match="keyframe images"):
        engine.generate(
            images[0], images[1], "a dog", {**seg, "keyframes": []}, PARAMS, lambda p: None, keyframes=(images[2],)
        )
