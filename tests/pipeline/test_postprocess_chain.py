"""The whole chain on real encoded files, and auto mode's decisions on crafted inputs."""

from __future__ import annotations

import numpy as np
import pytest

from backend.pipeline.face_restore import RetinaFaceDetector
from backend.pipeline.postprocess import PostprocessError, plan_postprocess, run_postprocess
from backend.utils.model_registry import ensure_weight
from backend.utils.progress import JobCancelled, Progress
from backend.utils.video_io import VideoInfo, probe, read_frames, write_video
from tests.helpers.postprocess import (
    make_settings,
    save_codeformer,
    save_retinaface,
    save_rife,
    save_upscaler,
    smooth_frames,
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    s = make_settings(tmp_path_factory.mktemp("chain"), post_chunk_frames=4)
    save_rife(s)
    save_upscaler(s, "realesr-animevideov3")
    save_upscaler(s, "realesrgan-x2plus", num_blocks=1)
    save_retinaface(s, faces="never")
    save_codeformer(s, n_layers=1)
    return s


@pytest.fixture()
def source(tmp_path):
    return write_video(tmp_path / "in.mp4", smooth_frames(9, 48, 64, shift=1.5), fps=30)


def test_every_stage_on_gives_expected_size_count_and_fps(settings, source, tmp_path):
    events: list[Progress] = []
    options = {
        "mode": "manual",
        "face_restore": True,
        "upscale": 2,
        "interpolate": 2,
        "upscale_model": "realesr-animevideov3",
        "codeformer_fidelity": 0.6,
    }
    report = run_postprocess(source, tmp_path / "out.mp4", options, settings, events.append, metadata={"job": "t1"})
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height) == (128, 96)
    assert info.frames == 2 * 9 - 1 == report["output"]["frames"]
    assert info.fps == pytest.approx(60.0)
    assert report["stages"] == ["face_restore", "upscale", "interpolate"]
    assert report["output"] == {"width": 128, "height": 96, "fps": 60.0, "frames": 17}
    assert report["faces_restored"] == 0  # the crafted detector sees no face
    stages_seen = {e.stage for e in events}
    assert {"upscale", "interpolate", "encode"} <= stages_seen
    assert events[-1].stage == "encode" and events[-1].fraction == 1.0
    assert not list(tmp_path.glob("*.partial*"))


def test_four_x_interpolation_and_x2_model_at_four(settings, tmp_path):
    source = write_video(tmp_path / "small.mp4", smooth_frames(5, 16, 24), fps=30)
    options = {"mode": "manual", "upscale": 4, "interpolate": 4, "upscale_model": "realesrgan-x2plus"}
    report = run_postprocess(source, tmp_path / "out.mp4", options, settings, lambda p: None)
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frames) == (96, 64, 4 * 5 - 3)
    assert info.fps == pytest.approx(120.0) and report["output"]["fps"] == 120.0


def test_interpolation_alone_doubles_fps_and_keeps_frames(settings, source, tmp_path):
    run_postprocess(source, tmp_path / "out.mp4", {"mode": "manual", "interpolate": 2}, settings, lambda p: None)
    out = read_frames(tmp_path / "out.mp4")
    src = read_frames(source)
    assert len(out) == 17 and probe(tmp_path / "out.mp4").fps == pytest.approx(60.0)
    # the original frames come back (up to one more H.264 generation)
    assert np.abs(out[::2].astype(int) - src.astype(int)).mean() < 4


def test_cancel_propagates_and_leaves_no_output(settings, source, tmp_path):
    def cancel(p: Progress):
        if p.stage == "encode":
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        run_postprocess(source, tmp_path / "out.mp4", {"mode": "manual", "interpolate": 2}, settings, cancel)
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob("*.partial*"))


def test_missing_weights_fail_the_stage_with_file_and_place(tmp_path, source):
    empty = make_settings(tmp_path / "empty")
    with pytest.raises(PostprocessError) as info:
        run_postprocess(source, tmp_path / "out.mp4", {"mode": "manual", "interpolate": 2}, empty, lambda p: None)
    assert info.value.stage == "interpolate"
    assert "flownet.pkl" in str(info.value) and str(empty.rife_dir) in str(info.value)
    assert not (tmp_path / "out.mp4").exists()


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    found = {}
    for kind in ("always", "never"):
        s = make_settings(tmp_path_factory.mktemp(kind))
        save_retinaface(s, faces=kind)
        found[kind] = RetinaFaceDetector.from_checkpoint(ensure_weight("retinaface-resnet50", s), max_side=64)
    return found


def _info(w, h, fps):
    return VideoInfo(width=w, height=h, fps=fps, frames=90, metadata={})


def test_auto_mode_on_a_small_30fps_video_with_faces(settings, detectors):
    samples = smooth_frames(2, 76, 80)
    plan = plan_postprocess({"mode": "auto"}, _info(640, 608, 30.0), samples, settings, detector=detectors["always"])
    assert plan.stages == ["face_restore", "upscale", "interpolate"]
    assert (plan.upscale, plan.interpolate) == (2, 2)
    text = " ".join(plan.reasons)
    assert "faces found in 2 of 2" in text and "608 px is below 1080" in text and "30 fps is below 60" in text


def test_auto_mode_leaves_a_large_60fps_video_without_faces_alone(settings, detectors):
    plan = plan_postprocess(
        {"mode": "auto"}, _info(1920, 1080, 60.0), smooth_frames(2, 54, 96), settings, detector=detectors["never"]
    )
    assert plan.stages == [] and len(plan.reasons) == 3
    assert "no face" in plan.reasons[0]


def test_auto_mode_picks_the_smallest_factor_reaching_the_targets(settings, detectors):
    plan = plan_postprocess(
        {"mode": "auto"}, _info(480, 270, 15.0), smooth_frames(1, 27, 48), settings, detector=detectors["never"]
    )
    assert (plan.upscale, plan.interpolate) == (4, 4)
    plan = plan_postprocess(
        {"mode": "auto"}, _info(720, 540, 24.0), smooth_frames(1, 27, 36), settings, detector=detectors["never"]
    )
    assert (plan.upscale, plan.interpolate) == (2, 4)  # 1080 reached by x2; 48 fps < 60 so x4


def test_manual_mode_takes_toggles_as_they_are(settings):
    plan = plan_postprocess(
        {"mode": "manual", "face_restore": False, "upscale": 1, "interpolate": 4},
        _info(320, 240, 120.0),
        None,
        settings,
    )
    assert plan.stages == ["interpolate"] and plan.interpolate == 4
    with pytest.raises(ValueError, match="upscale must be 1, 2 or 4"):
        plan_postprocess({"mode": "manual", "upscale": 3}, _info(320, 240, 30.0), None, settings)
