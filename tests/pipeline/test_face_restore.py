"""Face path: alignment geometry, detector and CodeFormer checkpoint formats, no-face frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from backend.pipeline.face_restore import (
    FACE_TEMPLATE_512,
    CodeFormerRestorer,
    Face,
    FaceRestorer,
    RetinaFaceDetector,
)
from backend.utils.model_registry import ensure_weight
from tests.helpers.postprocess import make_settings, save_codeformer, save_retinaface, smooth_frames


def _landmarks_in_frame(scale: float, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """The template's five points carried into a frame by a known similarity transform."""
    m = cv2.getRotationMatrix2D((256.0, 256.0), angle, scale)
    m[:, 2] += np.array(centre) - 256.0
    return np.c_[FACE_TEMPLATE_512, np.ones(5)] @ m.T


class _NoDetector:
    def detect(self, frames):
        raise AssertionError("restore_with takes detections as given")


def test_align_restore_paste_with_identity_restorer_returns_the_input():
    frame = smooth_frames(1, 240, 320, seed=4)[0]
    landmarks = _landmarks_in_frame(scale=0.35, angle=12.0, centre=(170.0, 120.0))
    stage = FaceRestorer(_NoDetector(), restorer=lambda x: x)
    out = stage.restore_with(frame[None], [[Face(0.99, np.zeros(4), landmarks)]])[0]
    diff = np.abs(out.astype(int) - frame.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 12, (diff.mean(), diff.max())
    assert stage.faces_restored == 1


def test_paste_lands_at_the_original_position():
    frame = np.full((240, 320, 3), 100, np.uint8)
    landmarks = _landmarks_in_frame(scale=0.3, angle=-8.0, centre=(200.0, 110.0))

    def white(x):  # a "restorer" painting the aligned face white
        return torch.ones_like(x)

    out = FaceRestorer(_NoDetector(), white).restore_with(frame[None], [[Face(0.99, np.zeros(4), landmarks)]])[0]
    changed = np.argwhere(out[..., 0] > 200)
    cy, cx = changed.mean(axis=0)
    # the template's face centre (256, 256) maps to (200, 110)
    assert abs(cx - 200) < 4 and abs(cy - 110) < 4
    assert out[5, 5, 0] == 100 and out[235, 10, 0] == 100  # far from the face: untouched


@pytest.mark.slow
def test_detector_loads_published_layout_and_frame_without_face_is_untouched(tmp_path):
    settings = make_settings(tmp_path)
    save_retinaface(settings, faces="never")
    path = ensure_weight("retinaface-resnet50", settings)
    assert all(k.startswith("module.") for k in torch.load(path, weights_only=True))
    detector = RetinaFaceDetector.from_checkpoint(path, device="cpu")
    frames = smooth_frames(2, 96, 128)
    assert detector.detect(frames) == [[], []]
    stage = FaceRestorer(detector, restorer=lambda x: pytest.fail("no face, no restore"))
    out = stage.process(frames)
    assert np.array_equal(out, frames)


def test_detector_reports_faces_with_five_landmarks_in_frame_coordinates(tmp_path):
    settings = make_settings(tmp_path)
    save_retinaface(settings, faces="always")
    detector = RetinaFaceDetector.from_checkpoint(ensure_weight("retinaface-resnet50", settings), max_side=64)
    faces = detector.detect(smooth_frames(1, 96, 128))[0]
    assert faces and all(f.landmarks.shape == (5, 2) and f.score > 0.9 for f in faces)


@pytest.mark.slow
def test_codeformer_published_layout_loads_through_spandrel_and_restores(tmp_path):
    settings = make_settings(tmp_path)
    save_codeformer(settings, n_layers=1)
    state = torch.load(ensure_weight("codeformer", settings), weights_only=True)
    assert set(state) == {"params_ema"}
    restorer = CodeFormerRestorer.from_checkpoint(ensure_weight("codeformer", settings), fidelity=0.5)
    out = restorer(torch.rand(1, 3, 512, 512) * 2 - 1)
    assert out.shape == (1, 3, 512, 512) and out.min() >= -1 and out.max() <= 1
