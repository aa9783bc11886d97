"""RIFE stage: our IFNet loads the published key layout strictly, frame counts, cuts, chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from backend.pipeline.interpolator import RifeInterpolator, scene_change_scores
from backend.pipeline.rife_ifnet import IFNet, load_ifnet
from backend.utils.model_registry import ensure_weight
from tests.helpers.postprocess import make_settings, save_rife, smooth_frames


@pytest.fixture(scope="module")
def rife_path(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("rife"))
    save_rife(settings)
    return ensure_weight(f"rife-{settings.rife_model}", settings)


def test_checkpoint_keys_match_practical_rife_layout(rife_path):
    state = torch.load(rife_path, weights_only=True)
    assert all(k.startswith("module.") for k in state)
    for key in (
        "module.block0.conv0.0.0.weight",
        "module.block4.convblock.7.beta",
        "module.block0.lastconv.0.weight",
        "module.encode.cnn3.weight",
    ):
        assert key in state
    assert state["module.block0.conv0.0.0.weight"].shape == (96, 15, 3, 3)
    assert state["module.block1.conv0.0.0.weight"].shape == (64, 28, 3, 3)
    assert state["module.block4.lastconv.0.weight"].shape == (32, 52, 4, 4)
    model = load_ifnet(rife_path)
    assert isinstance(model, IFNet)


def test_strict_load_rejects_unknown_keys(rife_path, tmp_path):
    state = torch.load(rife_path, weights_only=True)
    state["module.block5.conv0.0.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "flownet.pkl")
    with pytest.raises(RuntimeError) as info:
        load_ifnet(tmp_path / "flownet.pkl")
    # One sentence, not the state-dict error's list of every key.
    assert "not a RIFE checkpoint" in str(info.value) and "block5" not in str(info.value)
    assert str(info.value).count("\n") == 0


@pytest.mark.parametrize("factor", [2, 4])
def test_frame_count_and_originals_kept(rife_path, factor):
    frames = smooth_frames(5, 40, 56)
    interp = RifeInterpolator.from_checkpoint(rife_path, factor, scene_threshold=1.0)
    out = interp.process(frames)
    assert len(out) == factor * len(frames) - (factor - 1)  # 2n-1, 4n-3
    assert np.array_equal(out[::factor], frames)  # the originals sit at every factor-th place
    assert out.shape[1:] == frames.shape[1:]


def test_four_x_is_one_pass_per_pair_with_three_timesteps(rife_path):
    interp = RifeInterpolator.from_checkpoint(rife_path, 4, scene_threshold=1.0, batch_size=64)
    calls = []
    hook = interp.model.register_forward_hook(lambda _m, args, _o: calls.append(args[2].tolist()))
    try:
        interp.process(smooth_frames(3, 32, 32))
    finally:
        hook.remove()
    assert len(calls) == 1  # every pair and timestep in one batch
    assert sorted(calls[0]) == sorted([0.25, 0.5, 0.75] * 2)


def test_chunked_stream_equals_one_pass(rife_path):
    frames = smooth_frames(7, 32, 48, seed=2)
    whole = RifeInterpolator.from_checkpoint(rife_path, 2, scene_threshold=1.0).process(frames)
    streamed_stage = RifeInterpolator.from_checkpoint(rife_path, 2, scene_threshold=1.0)
    parts = [streamed_stage.process(frames[i : i + 3]) for i in range(0, 7, 3)]
    streamed = np.concatenate(parts)
    assert len(streamed) == 13
    assert np.abs(streamed.astype(int) - whole.astype(int)).max() <= 1


def test_hard_cut_is_not_blended(rife_path):
    a = smooth_frames(3, 48, 64, seed=1)
    b = 255 - smooth_frames(3, 48, 64, seed=9)  # a different scene
    frames = np.concatenate([a, b])
    threshold = make_settings(Path("/nonexistent")).scene_change_threshold
    scores = scene_change_scores(frames)
    assert scores[2] > threshold > max(scores[:2].max(), scores[3:].max())
    interp = RifeInterpolator.from_checkpoint(rife_path, 4, scene_threshold=threshold)
    out = interp.process(frames)
    assert interp.cuts == 1
    cut = out[4 * 2 : 4 * 3 + 1]  # a[2], three in-betweens, b[0]
    for frame in cut[1:-1]:
        assert np.array_equal(frame, a[2]) or np.array_equal(frame, b[0])
    assert np.array_equal(cut[1], a[2]) and np.array_equal(cut[3], b[0])
