"""The timed-prompt form, its sections, the end-frame influence setting and what each engine does
with both: parsed, planned and refused by the real job-layer code; the morph curve on real images."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from backend.contracts import messages
from backend.contracts.errors import JobError
from backend.contracts.models import JobSettings, TakeCreate
from backend.contracts.timed_prompts import EXAMPLE, MalformedTimedPrompt, TimedPiece, format_timed, parse, section_of
from backend.jobs import params as smart_params
from backend.jobs.transition_options import check_engine, plan_prompts, prompt_sections
from backend.pipeline.morph import morph_transition
from backend.web.error_responses import STATUS
from tests.helpers.images import scene

CODES = (
    "engine_no_end_influence",
    "engine_no_timed_prompts",
    "timed_prompt_malformed",
    "timed_prompt_too_late",
    "timed_prompt_same_section",
)


def test_parse_the_form():
    assert parse("a cat [smiling] walks") is None  # brackets inside a plain prompt stay plain
    assert parse(None) is None and parse("") is None
    assert parse(EXAMPLE) == [TimedPiece(0, "a cat sits"), TimedPiece(1.2, "the cat jumps")]
    assert parse(" [2.4s:c]  [0 s : a, b ]") == [TimedPiece(0, "a, b"), TimedPiece(2.4, "c")]
    assert format_timed(parse(EXAMPLE) or []) == EXAMPLE
    for bad in ("[0s a cat]", "[0s: a cat", "[0s: a cat] then", "[0s: ]", "[1.2: x]", "[0s: a [b]]"):
        with pytest.raises(MalformedTimedPrompt):
            parse(bad)


def test_times_snap_to_the_nearest_section():
    assert [section_of(t, 1.2) for t in (0, 0.5, 0.6, 1.2, 1.7, 1.8, 3.6)] == [0, 0, 1, 1, 1, 2, 3]


def _segment(seconds: float) -> dict:
    return smart_params.resolve(JobSettings(seconds=seconds, seed=1), 1)["segments"][0]


def test_sections_are_planned_and_bad_forms_refused():
    seg = _segment(3.6)  # 3 sections
    assert seg["sections"] == 3
    assert prompt_sections("framepack", 0, "[0s: a] [1.3s: b] [2.4s: c]", seg) == [
        {"at": 0.0, "section": 0, "text": "a"},
        {"at": 1.3, "section": 1, "text": "b"},
        {"at": 2.4, "section": 2, "text": "c"},
    ]
    assert prompt_sections("framepack", 0, "a plain prompt", seg) is None
    cases = [
        ("[0s a]", "timed_prompt_malformed", {"n": 2, "expected": EXAMPLE}),
        ("[0s: a] [3.6s: b]", "timed_prompt_too_late", {"n": 2, "at": "3.6", "seconds": "3.633", "limit": "2.4"}),
        ("[0s: a] [0.4s: b]", "timed_prompt_same_section", {"n": 2, "section": 1}),
    ]
    for text, code, params in cases:
        with pytest.raises(JobError) as err:
            prompt_sections("morph", 1, text, seg)  # morph checks the form it will not use
        assert err.value.code == code and err.value.params == params
        assert STATUS[code] == 422
    params = {"segments": [seg, dict(seg)]}
    plan_prompts("framepack", params, ["[0s: a] [1.2s: b]", None])
    assert [p["section"] for p in params["segments"][0]["prompt_sections"]] == [0, 1]
    assert "prompt_sections" not in params["segments"][1]


def test_wan_refuses_what_it_cannot_do_and_morph_accepts():
    with pytest.raises(JobError) as err:
        check_engine("wan", 0.5, [])
    assert err.value.code == "engine_no_end_influence" and err.value.params == {"engine": "wan"}
    with pytest.raises(JobError) as err:
        check_engine("wan", None, ["plain", EXAMPLE])
    assert err.value.code == "engine_no_timed_prompts" and err.value.params == {"engine": "wan", "n": 2}
    check_engine("wan", 1.0, ["plain", "a [bracketed] word"])
    for engine in ("framepack", "morph"):
        check_engine(engine, 0.05, [EXAMPLE])


def test_every_new_sentence_has_both_languages():
    for code in CODES:
        entry = messages.CATALOGUE[code]
        assert entry["en"] and entry["ko"]
        assert set(messages.fields(entry["en"])) == set(messages.fields(entry["ko"]))


def test_end_influence_setting_and_params():
    for bad in (0.04, 1.01, float("nan")):
        with pytest.raises(ValidationError):
            JobSettings(end_influence=bad)
        with pytest.raises(ValidationError):
            TakeCreate(end_influence=bad)
    default = smart_params.resolve(JobSettings(seed=1), 2)
    assert [s["end_influence"] for s in default["segments"]] == [1.0, 1.0]
    weak = smart_params.resolve(JobSettings(seed=1, end_influence=0.4), 2)
    assert [s["end_influence"] for s in weak["segments"]] == [0.4, 0.4]
    assert smart_params.retake("framepack", default["segments"][0], None, None, 0.2)["end_influence"] == 0.2
    assert smart_params.retake("framepack", weak["segments"][0], None, None)["end_influence"] == 0.4
    wan = smart_params.resolve(JobSettings(seed=1), 1, engine="wan")
    assert "end_influence" not in wan["segments"][0]


def test_morph_influence_bends_the_dissolve_and_keeps_the_ends():
    a = np.asarray(scene(64, 48, shift=0))
    b = np.asarray(scene(64, 48, shift=12, hue=80))
    base = morph_transition(a, b, 9)
    assert np.array_equal(morph_transition(a, b, 9, end_influence=1.0), base)
    weak = morph_transition(a, b, 9, end_influence=0.3)
    assert np.array_equal(weak[0], a) and np.array_equal(weak[-1], b)
    mid = 4
    # Less pull: the middle frame is nearer the first image than the plain dissolve's.
    dist = lambda x, y: np.abs(x.astype(int) - y.astype(int)).mean()  # noqa: E731
    assert dist(weak[mid], a) < dist(base[mid], a)
