"""End-frame influence and timed prompts through the real queue, store and morph lane (in process),
and a timed Korean prompt through the real translation service, piece by piece."""

from __future__ import annotations

import pytest

from backend.contracts.errors import JobError
from backend.contracts.models import JobCreate, JobSettings, TakeCreate
from backend.jobs.analyzers.service import AnalysisService
from tests.helpers.inprocess import Studio, studio_settings
from tests.helpers.translators import DictTranslator


async def test_planned_sections_influence_and_refusals(tmp_path):
    studio = await Studio(studio_settings(tmp_path)).start()
    try:
        ids = studio.upload(3)
        request = JobCreate(
            images=ids,
            engine="morph",
            prompts=["[0s: a cat sits] [1.2s: the cat jumps]", None],
            prompt="a plain prompt",
            settings=JobSettings(resolution=64, seconds=2.4, end_influence=0.5),
        )
        job_id = (await studio.queue.submit(request)).id
        job = await studio.until(lambda: (j := studio.queue.get(job_id)).status == "completed" and j)
        segments = job.params["segments"]
        assert [p["section"] for p in segments[0]["prompt_sections"]] == [0, 1]
        assert "prompt_sections" not in segments[1] and {s["end_influence"] for s in segments} == {0.5}

        # A new take: its own influence, and its prompt checked against its own length.
        view = await studio.queue.new_take(job_id, 0, TakeCreate(seed=3, end_influence=0.2))
        await studio.until(lambda: studio.queue.get(job_id).status == "completed")
        take = studio.store.takes(job_id, 0)[-1]
        assert take["params"]["end_influence"] == 0.2 and take["params"]["prompt_sections"][1]["section"] == 1
        assert view.transitions[0].takes[-1].take == 2
        with pytest.raises(JobError) as err:  # 1.2 s is past a one-section take's last section
            await studio.queue.new_take(job_id, 0, TakeCreate(seconds=1.2))
        assert err.value.code == "timed_prompt_too_late"

        refusals = [
            (dict(engine="wan", settings=JobSettings(end_influence=0.9)), "engine_no_end_influence"),
            (dict(engine="wan", prompt="[0s: a] [1.2s: b]"), "engine_no_timed_prompts"),
            (dict(engine="morph", prompt="[0s: a] [1.2s b]"), "timed_prompt_malformed"),
            (dict(engine="morph", prompt="[0s: a] [9.6s: b]"), "timed_prompt_too_late"),
        ]
        for fields, code in refusals:
            with pytest.raises(JobError) as err:
                await studio.queue.submit(JobCreate(images=ids, **fields))
            assert err.value.code == code, fields
    finally:
        await studio.stop()


async def test_a_timed_korean_prompt_is_translated_piece_by_piece(tmp_path):
    translator = DictTranslator()
    service = AnalysisService(studio_settings(tmp_path), translator=translator)
    try:
        [result] = await service.english_prompts(
            ["[0s: 고양이] [1.2s: 바다 위로 해가 진다]"], [tmp_path / "a.png", tmp_path / "b.png"]
        )
    finally:
        await service.aclose()
    assert result.english == "[0s: cat] [1.2s: The sun sets over the sea]"
    assert sorted(translator.calls) == sorted(["고양이", "바다 위로 해가 진다"])
