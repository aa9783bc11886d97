"""Held heads and tails ("arrives early, then stands still" and its mirror) on crafted clips whose
answers are known by construction (tests/helpers/crafted_clips.py): the same real photo and the
same cross-fade or pan, the motion squeezed into one third and the rest held with grain."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from backend.pipeline import scores
from backend.pipeline.scores import score_take, score_take_file
from backend.utils.video_io import write_video
from tests.helpers import crafted_clips as cc

FPS = cc.FPS
PAIRS = cc.N - 1
HELD = cc.N - cc.N // 3  # frames held after (or before) the third that moves


@cache
def scored(name: str) -> scores.TakeScore:
    s, t = cc.start_image(), cc.target_image()
    if name == "morph":
        from backend.pipeline.morph import morph_transition

        return score_take(morph_transition(s, t, cc.N), s, t, FPS)
    anchored = {
        "crossfade": cc.crossfade,
        "arrive_then_hold": cc.arrive_then_hold,
        "hold_then_arrive": cc.hold_then_arrive,
        "hold_then_jump": cc.hold_then_jump,
    }
    if name in anchored:
        return score_take(anchored[name](), s, t, FPS)
    frames = {
        "pan": lambda: cc.pan(4.0),
        "subpixel": lambda: cc.subpixel_pan(1.5),
        "stutter": cc.stutter,
        "pan_then_hold": cc.pan_then_hold,
        "still_pair": cc.still_pair,
    }[name]()
    return score_take(frames, frames[0], frames[-1], FPS)


def test_a_clip_that_arrives_in_its_first_third_then_holds_has_a_frozen_tail():
    held, even = scored("arrive_then_hold"), scored("crossfade")
    assert "frozen_tail" in held.flags and "frozen_head" not in held.flags
    assert held.hold.frozen_tail and held.hold.head_frames == 0
    # The hold is the clip's last HELD frames with grain; the measure sees all of them, and only them.
    assert held.hold.tail_frames == HELD
    assert held.hold.tail_s == pytest.approx(HELD / FPS, abs=1e-3)
    assert held.hold.held_share == pytest.approx(HELD / PAIRS, abs=1e-3)
    # It reaches the target and moves smoothly: without the hold measure it would rank as good.
    assert held.end.ssim > 0.99 and not held.arrival.misses_target and held.motion.cuts == ()
    # The same cross-fade spread evenly over the clip: no flag, and well ahead.
    assert even.hold.held_share == 0.0 and not {"frozen_head", "frozen_tail"} & set(even.flags)
    assert held.overall < even.overall - 25


def test_the_mirror_holds_first_then_arrives_and_has_a_frozen_head():
    held, even = scored("hold_then_arrive"), scored("crossfade")
    assert "frozen_head" in held.flags and "frozen_tail" not in held.flags
    assert held.hold.head_frames == HELD  # the held copies and the cross-fade's own first frame
    assert not held.arrival.abrupt  # no jump: each step of the cross-fade is small
    assert held.overall < even.overall - 25


def test_camera_motion_that_stops_is_seen_though_the_arrival_curve_of_a_pan_cannot_see_it():
    held, even = scored("pan_then_hold"), scored("pan")
    assert "frozen_tail" in held.flags and held.hold.tail_frames == HELD
    assert held.motion.mean_speed_px > 2.0  # it moves, fast, while it moves
    assert held.overall < even.overall - 25


@pytest.mark.parametrize("name", ["crossfade", "morph", "pan", "subpixel", "stutter"])
def test_motion_spread_over_the_clip_is_not_a_hold(name):
    r = scored(name)
    assert not {"frozen_head", "frozen_tail"} & set(r.flags), r.hold
    assert r.hold.held_share < 0.05 and not r.hold.still


def test_a_still_pair_made_still_is_not_flagged_for_being_still():
    # Decision: a take whose every window is still (start ≈ target, the engine held it) holds
    # nothing: stillness is what the pair asks for, and adherence says whether it should have moved.
    r = scored("still_pair")
    assert r.hold.still and r.hold.held_share == 0.0 and r.hold.score == 1.0
    assert not {"frozen_head", "frozen_tail"} & set(r.flags)
    assert r.overall > 95


def test_static_then_jump_is_also_a_frozen_head():
    r = scored("hold_then_jump")
    assert {"static_then_jump", "frozen_head"} <= set(r.flags)
    assert r.hold.head_frames >= 60 and r.overall < 40


def test_a_hold_shorter_than_the_threshold_is_weighed_but_not_flagged():
    # FramePack often rests a few frames on the end image; 8 frames of 72 costs a little, no flag.
    s, t = cc.start_image(), cc.target_image()
    frames = cc.arrive_then_hold(moving=cc.N - 8)
    r = score_take(frames, s, t, FPS)
    # A window straddling the last small step of the cross-fade reads still too: one frame's slack.
    assert 8 <= r.hold.tail_frames <= 9 and not r.hold.frozen_tail
    assert "frozen_tail" not in r.flags
    assert scored("crossfade").overall - 10 < r.overall < scored("crossfade").overall


def test_a_held_tail_is_found_in_the_take_file_too(tmp_path):
    # The grain of the held frames passes through H.264 (crf 16); the hold is still one.
    path = write_video(tmp_path / "take.mp4", cc.arrive_then_hold(), FPS)
    r = score_take_file(path, cc.start_image(), cc.target_image())
    assert "frozen_tail" in r.flags and abs(r.hold.tail_frames - HELD) <= 2
    summary = r.summary()
    assert summary["held_share"] == r.hold.held_share and "frozen_tail" in summary["flags"]
    assert r.to_dict()["hold"]["frozen_tail"] is True and r.version == scores.VERSION == 2


def test_holds_are_read_in_chunks_as_from_a_whole_clip():
    frames = cc.hold_then_arrive()
    scorer = scores.TakeScorer(cc.start_image(), cc.target_image(), FPS)
    for i in range(0, len(frames), 7):
        scorer.add(frames[i : i + 7])
    assert scorer.finish().to_dict() == scored("hold_then_arrive").to_dict()
    assert np.isfinite(scored("hold_then_arrive").overall)
