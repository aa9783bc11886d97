"""Takes in the job side, in the test process (morph engine, a real SQLite store, the real fan-out):
every transition's take is stored with its parameters and score, the score is in the take's file,
seams are scored at the join, and a restart in the middle of a take keeps the takes made before it."""

from __future__ import annotations

import json

from backend.contracts.models import JobStatus
from backend.jobs.store import Store
from backend.utils.files import output_dir
from backend.utils.video_io import probe
from tests.helpers.inprocess import Studio
from tests.helpers.inprocess import per_pair as _per_pair
from tests.helpers.inprocess import studio_settings as _settings


async def test_every_take_is_stored_scored_and_tagged(tmp_path):
    settings = _settings(tmp_path)
    studio = await Studio(settings, suggest=_per_pair(1.2, 1.2)).start()
    try:
        job_id = await studio.submit(studio.upload(3), seed=11)
        done = (await studio.until(lambda: studio.events(job_id, "job.completed")))[0]["job"]
    finally:
        await studio.stop()

    transitions = done["transitions"]
    assert [t["index"] for t in transitions] == [0, 1] and [t["chosen"] for t in transitions] == [1, 1]
    for i, transition in enumerate(transitions):
        [take] = transition["takes"]
        assert (take["take"], take["status"], take["chosen"], take["seed"]) == (1, "done", True, 11 + i)
        assert take["video_url"] == f"/files/outputs/{job_id}/segment_{i:03d}.mp4"
        assert 0 <= take["overall"] <= 100 and take["score"]["overall"] == take["overall"]
        assert take["frames"] == done["params"]["segments"][i]["frames"] == take["score"]["frames"]
        # The file carries the same score in its tags.
        tags = json.loads(probe(output_dir(settings, job_id) / f"segment_{i:03d}.mp4").metadata["comment"])
        assert (tags["job"], tags["transition"], tags["take"], tags["overall"]) == (job_id, i + 1, 1, take["overall"])
    # One seam between the two transitions, scored at the join; none after the last.
    assert 0 <= transitions[0]["seam_after"]["score"] <= 1 and transitions[1]["seam_after"] is None
    segments = [e for e in studio.events(job_id, "job.segment")]
    assert [(e["segment"], e["take"]) for e in segments] == [(1, 1), (2, 1)]
    assert [e["overall"] for e in segments] == [t["takes"][0]["overall"] for t in transitions]
    assert not list(output_dir(settings, job_id).glob("*.partial.mp4"))
    assert not list(output_dir(settings, job_id).glob("*.tagged.mp4"))


async def test_a_restart_in_the_middle_of_a_take_keeps_the_takes(tmp_path):
    settings = _settings(tmp_path)
    studio = await Studio(settings, suggest=_per_pair(1.2, 20)).start()
    try:
        job_id = await studio.submit(studio.upload(3))
        await studio.until(lambda: studio.events(job_id, "job.segment"))
    finally:
        await studio.stop()  # cut off while the second transition's take is made

    store = Store(settings.database_path)
    assert store.get_job(job_id)["status"] == JobStatus.interrupted
    first, second = store.takes(job_id)
    assert (first["status"], first["chosen"], second["status"]) == ("done", True, "pending")
    first_score = first["score"]
    store.close()
    first_file = output_dir(settings, job_id) / "segment_000.mp4"
    made = first_file.stat().st_mtime_ns

    again = await Studio(settings, suggest=_per_pair(1.2, 20)).start()
    try:
        job = (await again.until(lambda: again.events(job_id, "job.completed")))[0]["job"]
    finally:
        await again.stop()
    assert first_file.stat().st_mtime_ns == made
    assert [(e["segment"], e["take"]) for e in again.events(job_id, "job.segment")] == [(2, 1)]
    takes = [t["takes"] for t in job["transitions"]]
    assert [[(t["take"], t["status"], t["chosen"]) for t in ts] for ts in takes] == [
        [(1, "done", True)],
        [(1, "done", True)],
    ]
    assert takes[0][0]["score"] == first_score
    assert probe(output_dir(settings, job_id) / "final.mp4").frames == job["params"]["total_frames"]
