"""Real-ESRGAN stage: published layouts load strictly, sizes, tiling agreement, bounded tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.pipeline.upscaler import Upscaler, load_spandrel
from backend.utils.model_registry import ensure_weight, weight_path
from tests.helpers.postprocess import make_settings, save_upscaler, smooth_frames


def _path(name, settings):
    # x4plus has a published size, which a random file cannot have: ensure_weight would (rightly)
    # treat it as corrupt, so that one is read from its registry path directly.
    return weight_path(name, settings) if name == "realesrgan-x4plus" else ensure_weight(name, settings)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("up")
    s = make_settings(root)
    for name in ("realesrgan-x4plus", "realesrgan-x2plus", "realesr-animevideov3"):
        save_upscaler(s, name, num_blocks=2)
    return s


@pytest.mark.parametrize(
    "name, arch, model_scale",
    [("realesrgan-x4plus", "ESRGAN", 4), ("realesrgan-x2plus", "ESRGAN", 2), ("realesr-animevideov3", "Compact", 4)],
)
@pytest.mark.parametrize("out_scale", [2, 4])
def test_output_shape_for_each_model_and_scale(settings, name, arch, model_scale, out_scale):
    descriptor = load_spandrel(_path(name, settings), expected_arch=arch)
    assert descriptor.scale == model_scale
    up = Upscaler(descriptor, out_scale, tile=32, overlap=8, batch_size=2)
    frames = smooth_frames(3, 42, 58)
    out = up.process(frames)
    assert out.shape == (3, 42 * out_scale, 58 * out_scale, 3) and out.dtype == np.uint8


def test_strict_loading_rejects_a_truncated_checkpoint(settings, tmp_path):
    state = torch.load(ensure_weight("realesr-animevideov3", settings), weights_only=True)
    state["params"].pop("body.1.weight")  # a PReLU weight: the detector still matches, loading must not
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(Exception):  # noqa: B017 - spandrel and torch raise several types here
        load_spandrel(tmp_path / "broken.pth")


@pytest.mark.parametrize("name, tolerance", [("realesr-animevideov3", 1), ("realesrgan-x4plus", 2)])
def test_tiled_matches_whole_frame_in_the_interior(settings, name, tolerance):
    descriptor = load_spandrel(_path(name, settings))
    frames = smooth_frames(2, 72, 96, seed=3)
    whole = Upscaler(descriptor, 4, tile=0).process(frames).astype(int)
    tiled = Upscaler(descriptor, 4, tile=32, overlap=24).process(frames).astype(int)
    border = 16 * 4
    diff = np.abs(whole - tiled)[:, border:-border, border:-border]
    assert diff.max() <= tolerance, diff.max()


def test_model_only_sees_bounded_tiles_at_any_frame_size(settings):
    descriptor = load_spandrel(ensure_weight("realesr-animevideov3", settings))
    up = Upscaler(descriptor, 4, tile=48, overlap=8, batch_size=2)
    seen = []
    hook = up.model.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    try:
        # Three frames (one more than a batch), each more than two tiles high and three wide, with
        # a remainder both ways: every edge case of the tiling, at a quarter of the pixels it had.
        out = up.process(np.zeros((3, 100, 170, 3), np.uint8))
    finally:
        hook.remove()
    assert out.shape == (3, 400, 680, 3)
    assert seen and max(max(s[2], s[3]) for s in seen) <= 48 + 2 * 8
    assert max(s[0] for s in seen) <= 2  # batches of frames, never the whole chunk past batch_size
