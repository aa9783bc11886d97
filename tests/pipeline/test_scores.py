"""Take and seam scores on crafted clips whose answers are known by construction (a real photo
moved, blended and cut in known ways; see tests/helpers/crafted_clips.py), plus the morph engine's
own output as a good take."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import numpy as np
import pytest

from backend.pipeline import scores
from backend.pipeline.scores import TakeScorer, score_seam, score_seam_files, score_take, score_take_file
from backend.utils.video_io import read_frames, write_video
from tests.helpers import crafted_clips as cc

FPS = cc.FPS
LAST = cc.N - 1


@cache
def clip(name: str) -> np.ndarray:
    if name == "morph":
        from backend.pipeline.morph import morph_transition

        return morph_transition(cc.start_image(), cc.target_image(), cc.N)
    return {
        "crossfade": cc.crossfade,
        "ease_in": cc.ease_in,
        "short_of_target": lambda: cc.crossfade(until=0.6),
        "hold_then_jump": cc.hold_then_jump,
        "with_cut": cc.with_cut,
        "pan": lambda: cc.pan(4.0),
        "subpixel": lambda: cc.subpixel_pan(1.5),
        "stutter": cc.stutter,
    }[name]()


ANCHORED = {"crossfade", "ease_in", "short_of_target", "hold_then_jump", "with_cut", "morph"}


@cache
def scored(name: str) -> scores.TakeScore:
    frames = clip(name)
    if name in ANCHORED:
        return score_take(frames, cc.start_image(), cc.target_image(), FPS)
    return score_take(frames, frames[0], frames[-1], FPS)


def test_importing_the_scores_loads_no_torch():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, backend.pipeline.scores; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_linear_cross_fade_arrives_steadily_and_half_way_in_the_middle():
    r = scored("crossfade")
    curve = np.asarray(r.arrival.curve)
    assert len(curve) == cc.N and curve[0] == 0.0 and curve[-1] == 1.0
    assert np.all(np.diff(curve) > 0)
    # The distance ratio is exactly t for a blend in a normed space; Lab bends it only slightly.
    assert np.abs(curve - np.arange(cc.N) / LAST).max() < 0.04
    assert 34 <= r.arrival.frame_50 <= 37 and abs(r.arrival.t50 - 0.5) < 0.03
    assert 62 <= r.arrival.frame_90 <= 66
    assert r.arrival.time_50_s == pytest.approx(r.arrival.frame_50 / FPS, abs=1e-3)
    assert r.arrival.jump_share < 0.15
    assert r.end.ssim > 0.999 and r.end.delta_e < 0.5 and r.start.ssim > 0.999
    assert r.motion.cuts == () and r.flags == ()


def test_a_clip_that_holds_then_jumps_is_flagged_and_a_late_but_smooth_one_is_not():
    jump = scored("hold_then_jump")
    assert jump.arrival.static_then_jump and jump.arrival.late and jump.arrival.abrupt
    assert "static_then_jump" in jump.flags
    assert max(jump.arrival.curve[:66]) < 0.05
    assert jump.arrival.t50 > 0.9 and jump.arrival.jump_share > 0.9
    assert 66 <= jump.arrival.jump_frame <= 69
    # Reaching the target is not the problem: the last frame is the target.
    assert jump.end.ssim > 0.999 and not jump.arrival.misses_target

    late = scored("ease_in")
    assert late.arrival.late and not late.arrival.abrupt and not late.arrival.static_then_jump
    assert late.arrival.t50 > 0.75 and late.arrival.jump_share < scores.ABRUPT_SHARE
    for name in ("crossfade", "morph", "pan", "with_cut"):
        assert not scored(name).arrival.static_then_jump, name


def test_a_hard_cut_inside_a_take_is_found_at_its_frame():
    r = scored("with_cut")
    assert r.motion.cuts == (cc.N // 2,)
    assert "cut" in r.flags and r.motion.score == 0.0
    assert r.motion.residual_max > 10 * r.motion.residual_median
    # The pan on either side of the cut is still measured (2 px/frame).
    assert r.motion.mean_speed_px == pytest.approx(2.0, rel=0.05)
    for name in ("crossfade", "ease_in", "morph", "pan", "subpixel", "stutter"):
        assert scored(name).motion.cuts == (), name


def test_flow_speed_matches_a_known_shift_of_a_real_photo():
    r = scored("pan")
    assert r.motion.mean_speed_px == pytest.approx(4.0, rel=0.03)
    assert all(s == pytest.approx(4.0, rel=0.10) for s in r.motion.speed_px)
    sub = scored("subpixel")
    assert sub.motion.mean_speed_px == pytest.approx(1.5, rel=0.05)
    assert r.motion.jerk < 0.05 and sub.motion.jerk < 0.05


def test_speeds_are_in_the_takes_own_pixels_whatever_the_working_size():
    import cv2

    photo = cv2.resize(cc.photo(), (1280, 1500), interpolation=cv2.INTER_AREA)
    frames = np.stack([np.ascontiguousarray(photo[300:780, 40 + 6 * i : 680 + 6 * i]) for i in range(10)])
    r = score_take(frames, frames[0], frames[-1], FPS)
    assert (r.width, r.height, r.work_width, r.work_height) == (640, 480, 256, 192)
    assert r.motion.mean_speed_px == pytest.approx(6.0, rel=0.05)


def test_a_stuttering_pan_is_less_smooth_than_a_steady_one():
    steady, stutter = scored("pan"), scored("stutter")
    assert stutter.motion.mean_speed_px == pytest.approx(4.0, rel=0.05)
    assert stutter.motion.jerk > 1.0 > 0.05 > steady.motion.jerk
    assert stutter.motion.speed_cv > 0.3 > steady.motion.speed_cv
    assert "jerky" in stutter.flags and "jerky" not in steady.flags
    assert stutter.motion.score < 0.3 < 0.9 < steady.motion.score
    assert stutter.overall < steady.overall


def test_a_take_that_stops_short_of_the_target_is_flagged():
    short, full = scored("short_of_target"), scored("crossfade")
    assert short.arrival.misses_target and "misses_target" in short.flags
    assert short.arrival.frame_90 is None and short.arrival.final < 0.8
    assert short.end.score < full.end.score - 0.2 and short.end.delta_e > 10
    assert short.overall < full.overall


def test_the_overall_score_ranks_a_good_take_above_a_jump_and_a_cut():
    good = [scored("crossfade").overall, scored("morph").overall]
    bad = [scored("hold_then_jump").overall, scored("with_cut").overall]
    assert min(good) > max(bad) + 10
    assert all(0.0 <= v <= 100.0 for v in good + bad)
    assert not scored("morph").flags


def test_a_seam_with_a_reversal_of_motion_is_flagged_and_a_continuing_one_is_not():
    on = score_seam(*cc.seam_takes(reverse=False), FPS)
    back = score_seam(*cc.seam_takes(reverse=True), FPS)
    assert on.flags == () and on.score == 1.0
    assert on.direction_cosine > 0.99 and on.change_ratio < 1.0
    assert back.reversal and "reversal" in back.flags and back.discontinuous
    assert back.direction_cosine < -0.99
    assert back.motion_change_px == pytest.approx(8.0, rel=0.05)  # +4 → -4 px/frame
    assert back.change_ratio > 10 and back.score < 0.3
    assert on.speed_before_px == pytest.approx(4.0, rel=0.03)
    assert not on.cut and not back.cut


def test_takes_that_do_not_meet_make_a_cut_at_the_seam():
    r = score_seam(*cc.seam_jump(), FPS)
    assert r.cut and r.score == 0.0 and "cut" in r.flags
    assert not r.reversal


def test_a_take_fed_in_chunks_scores_the_same_as_one_held_whole():
    frames = clip("with_cut")
    scorer = TakeScorer(cc.start_image(), cc.target_image(), FPS)
    for i in range(0, len(frames), 5):
        scorer.add(frames[i : i + 5])
    assert scorer.finish().to_dict() == scored("with_cut").to_dict()


def test_a_take_file_is_scored_like_its_frames(tmp_path):
    path = write_video(tmp_path / "take.mp4", clip("hold_then_jump"), FPS)
    from_file = score_take_file(path, cc.start_image(), cc.target_image())
    held = scored("hold_then_jump")
    assert from_file.fps == pytest.approx(FPS) and from_file.frames == cc.N
    assert set(from_file.flags) == set(held.flags)
    assert abs(from_file.arrival.frame_50 - held.arrival.frame_50) <= 1
    # H.264 (crf 16, 4:2:0 chroma) costs the anchors about 1.5 ΔE and 0.03 SSIM, hence the margin.
    assert abs(from_file.overall - held.overall) < 5
    assert from_file.end.ssim > 0.95 and from_file.end.delta_e < 3

    first, second = cc.seam_takes(reverse=True)
    path_a = write_video(tmp_path / "a.mp4", first, FPS)
    path_b = write_video(tmp_path / "b.mp4", second, FPS)
    from_files = score_seam_files(path_a, path_b)
    decoded = score_seam(read_frames(path_a), read_frames(path_b), FPS)
    assert from_files.to_dict() == decoded.to_dict()
    assert from_files.reversal


def test_anchors_of_another_size_are_fitted_to_the_frames():
    import cv2

    frames = clip("crossfade")
    target = cv2.resize(cc.target_image(), (640, 480), interpolation=cv2.INTER_CUBIC)
    wider = np.pad(target, ((0, 0), (80, 80), (0, 0)), mode="edge")  # 800x480: cropped back to 4:3
    r = score_take(frames, cc.start_image(), wider, FPS)
    assert r.end.ssim > 0.95 and r.end.delta_e < 2
    assert not r.flags


def test_a_loop_has_no_arrival_curve_and_still_an_overall_score():
    frames = clip("pan")
    loop = np.concatenate([frames[:36], frames[35::-1]])
    r = score_take(loop, loop[0], loop[0], FPS)
    assert not r.arrival.defined and r.arrival.score is None and r.arrival.curve == ()
    assert r.end.ssim > 0.999 and 0 < r.overall <= 100
    assert not {"late", "abrupt", "static_then_jump", "misses_target"} & set(r.flags)


def test_results_serialise_to_json():
    r = scored("with_cut")
    data = json.loads(json.dumps(r.to_dict()))
    assert data["overall"] == r.overall and data["flags"] == ["cut"]
    assert len(data["arrival"]["curve"]) == cc.N and len(data["motion"]["speed_px"]) == LAST
    summary = json.loads(json.dumps(r.summary()))
    assert summary["cuts"] == [cc.N // 2] and "curve" not in json.dumps(summary)
    seam = json.loads(json.dumps(score_seam(*cc.seam_takes(reverse=True), FPS).to_dict()))
    assert seam["flags"] == ["reversal", "discontinuous"]


@pytest.mark.parametrize("case", ["one_frame", "float_frames", "size_change", "no_fps", "seam_sizes"])
def test_bad_input_is_refused_with_a_reason(case):
    s, t = cc.start_image(), cc.target_image()
    frames = clip("crossfade")[:4]
    with pytest.raises(ValueError) as err:
        if case == "one_frame":
            score_take(frames[:1], s, t, FPS)
        elif case == "float_frames":
            score_take(frames.astype(np.float32), s, t, FPS)
        elif case == "size_change":
            scorer = TakeScorer(s, t, FPS)
            scorer.add(frames)
            scorer.add(frames[:, :200])
        elif case == "no_fps":
            TakeScorer(s, t, 0)
        else:
            score_seam(frames, frames[:, :200], FPS)
    assert str(err.value)


def test_an_image_model_adds_embedding_similarity(tmp_path):
    from backend.jobs.analyzers.image_analyzer import ImageAnalyzer, load_openclip
    from tests.helpers.openclip import clip_settings, tiny_clip_dir

    analyzer = ImageAnalyzer(load_openclip(clip_settings(tmp_path, tiny_clip_dir(tmp_path))))
    frames = cc.crossfade(n=8, until=0.6)
    r = score_take(frames, cc.start_image(), cc.target_image(), FPS, embedder=analyzer)
    assert r.start.clip == pytest.approx(1.0, abs=1e-4)  # the first frame is the start image
    assert -1.0 <= r.end.clip < 0.9999  # the last frame is not the target
    plain = score_take(frames, cc.start_image(), cc.target_image(), FPS)
    assert plain.end.clip is None and plain.overall == r.overall  # an extra, not in the overall
