"""Keyframes inside one Wan transition on a tiny random `WanImageToVideoPipeline` of the real
architecture, loaded through the studio's loader (CPU, fp32).

No keyframe: the engine's frames equal the plain pipeline's, bit for bit. A keyframe at latent k:
the condition the transformer gets (mask + VAE latents, recorded by a forward pre-hook) has the
mask set at latent k's last frame channel, its latents equal the plain condition's before k (the
VAE is causal in time) and differ from k on; the frames change.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.contracts.models import JobSettings
from backend.jobs import params as smart_params
from backend.pipeline.wan import wan_keyframes
from backend.pipeline.wan.wan_engine import WanEngine
from backend.utils.config import Settings
from backend.utils.model_registry import WAN_FOLDER
from tests.helpers.tiny_wan import save_tiny_pipeline

H, W = 32, 48
MASK = 4  # the condition's first channels: the mask, one per frame of a latent's four


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan-models")
    save_tiny_pipeline(root / WAN_FOLDER)
    gen = WanEngine(Settings(models_dir=root, device="cpu"))
    gen.load()
    return gen


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    return tuple(rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(3))  # first, last, keyframe


@pytest.fixture(scope="module")
def params():
    # 1.2 s at 16 fps: 21 frames, 6 latent frames (0..5); a keyframe may land on latents 1..4.
    p = smart_params.resolve(JobSettings(seconds=1.2, quality=50, seed=3), 1, [(W, H), (W, H)], engine="wan")
    p["steps"] = 2
    return p


def run(engine, images, segment, params, keyframes=()):
    conditions: list[torch.Tensor] = []

    def hook(_module, _args, inputs):
        conditions.append(inputs["hidden_states"].detach().clone())

    handle = engine.pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        frames = engine.generate(
            images[0], images[1], "a cat walks", segment, params, lambda p: None, keyframes=keyframes
        )
    finally:
        handle.remove()
    # hidden_states = [noisy latents (C channels), mask (4), condition latents (C)] per forward
    return frames, conditions


def test_a_keyframe_enters_the_condition_at_its_latent_index(engine, images, params):
    segment = params["segments"][0]
    assert segment["frames"] == 21
    plain_frames, plain_inputs = run(engine, images, segment, params)

    # No keyframe: the plain diffusers call, bit for bit.
    from PIL import Image

    with torch.no_grad():
        reference = engine.pipe(
            image=Image.fromarray(images[0]),
            last_image=Image.fromarray(images[1]),
            prompt="a cat walks",
            height=H,
            width=W,
            num_frames=21,
            num_inference_steps=2,
            guidance_scale=float(params["guidance"]),
            generator=torch.Generator("cpu").manual_seed(int(segment["seed"])),
            output_type="np",
        ).frames[0]
    assert np.array_equal(plain_frames, np.clip(np.round(np.asarray(reference) * 255.0), 0, 255).astype(np.uint8))

    channels = engine.pipe.transformer.config.in_channels
    latent = (channels - MASK) // 2
    for k in (1, 3):
        seg = {**segment, "keyframes": [{"image": "k", "at": k * 0.25, "point": k, "lands_at": k * 0.25}]}
        frames, inputs = run(engine, images, seg, params, keyframes=(images[2],))
        assert frames.shape == plain_frames.shape and not np.array_equal(frames, plain_frames)
        got, was = inputs[0], plain_inputs[0]
        # The noise is the same draw; only the condition changes.
        assert torch.equal(got[:, :latent], was[:, :latent])
        mask, plain_mask = got[:, latent : latent + MASK], was[:, latent : latent + MASK]
        expected = plain_mask.clone()
        expected[:, MASK - 1, k] = 1
        assert torch.equal(mask, expected)
        assert plain_mask[:, MASK - 1, k].max() == 0  # it was not given before
        cond, plain_cond = got[:, latent + MASK :], was[:, latent + MASK :]
        assert torch.equal(cond[:, :, :k], plain_cond[:, :, :k])  # causal VAE: before the keyframe, unchanged
        assert not torch.equal(cond[:, :, k], plain_cond[:, :, k])


def test_refusals(engine, images, params):
    segment = params["segments"][0]
    last_latent = (segment["frames"] - 1) // 4
    seg = {**segment, "keyframes": [{"image": "k", "at": 1.25, "point": last_latent, "lands_at": 1.25}]}
    with pytest.raises(ValueError, match="latent 1..4"):
        engine.generate(images[0], images[1], "a cat", seg, params, lambda p: None, keyframes=(images[2],))
    assert "prepare_latents" not in vars(engine.pipe) and "encode" not in vars(engine.pipe.vae)  # unwrapped again
    with pytest.raises(ValueError, match="keyframe images"):
        engine.generate(images[0], images[1], "a cat", segment, params, lambda p: None, keyframes=(images[2],))


def test_a_first_frame_only_model_refuses(engine):
    class FirstFrameOnly:
        config = type("Config", (), {"expand_timesteps": True})()

    with pytest.raises(wan_keyframes.WanKeyframesUnsupported) as err:
        with wan_keyframes.keyframes_in(FirstFrameOnly(), [np.zeros((H, W, 3), np.uint8)], [1]):
            pass
    assert err.value.code == "wan_keyframes_unsupported_model"
