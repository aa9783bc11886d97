"""The queue, the runner and its progress reporter inside the test process: no server, the morph
engine, a temporary SQLite store, and a WebSocket client on the real fan-out (the bytes it gets
are the bytes a page gets). Progress weights, ETA, resume after a restart, cancel against shutdown.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import TypeAdapter

from backend.contracts.events import JobsMessage
from backend.contracts.models import JobStatus, SegmentStatus
from backend.jobs.params import sections_for
from backend.jobs.runner import WEIGHTS_PLAIN
from backend.jobs.store import Store
from backend.utils.files import output_dir
from backend.utils.video_io import probe
from tests.helpers.inprocess import Studio
from tests.helpers.inprocess import per_pair as _per_pair
from tests.helpers.inprocess import studio_settings as _settings

MESSAGES = TypeAdapter(JobsMessage)


def _assert_eta(event: dict, start_progress: float) -> None:
    """The reporter's ETA: the pace since this run started, applied to what is left."""
    p, elapsed, eta = event["progress"], event["elapsed_s"], event["eta_s"]
    gained = p - start_progress
    if gained <= 0.01:
        assert eta is None
        return
    # elapsed_s and eta_s are rounded to 0.1 s and progress to 1e-4.
    slack = 0.06 * (1 - p) / gained + 0.06 + 1e-3 * elapsed / gained
    assert eta == pytest.approx(elapsed * (1 - p) / gained, abs=slack), event


async def test_progress_follows_the_weights_and_every_message_is_typed(tmp_path):
    studio = await Studio(_settings(tmp_path), suggest=_per_pair(1.2, 3.6)).start()
    try:
        job_id = await studio.submit(studio.upload(3))
        await studio.until(lambda: studio.events(job_id, "job.completed"))
    finally:
        await studio.stop()

    # Every frame is one of the typed messages, and encoding it again gives the same bytes.
    for raw in studio.socket.raw:
        message = MESSAGES.validate_json(raw)
        assert json.dumps(message.model_dump(mode="json"), separators=(",", ":")) == raw
    kinds = [m["type"] for m in studio.events(job_id)]
    assert kinds[0] == "job.queued" and kinds[1] == "job.started" and kinds[-1] == "job.completed"
    assert kinds.count("job.segment") == 2

    # One section then three: the first transition fills a quarter of the generation share.
    sections = [sections_for(1.2), sections_for(3.6)]
    assert sections == [1, 3]
    first_share = WEIGHTS_PLAIN["generate"] * sections[0] / sum(sections)
    progress = studio.events(job_id, "job.progress")
    values = [e["progress"] for e in progress]
    assert values == sorted(values) and values[-1] == 1.0
    generate = [e for e in progress if e["stage"] == "generate"]
    first = [e["progress"] for e in generate if e["segment"] == 1]
    second = [e["progress"] for e in generate if e["segment"] == 2]
    assert first and second
    assert max(first) == pytest.approx(first_share, abs=1e-4)
    assert min(second) >= max(first) and max(second) == pytest.approx(WEIGHTS_PLAIN["generate"], abs=1e-4)
    assert all(e["progress"] >= WEIGHTS_PLAIN["generate"] - 1e-4 for e in progress if e["stage"] == "join")
    # Morph reports frames as steps: the last event of each transition says all were made.
    last = [e for e in generate if e["segment"] == 2][-1]
    assert last["step"] == last["steps"] == sections[1] * 36 + 1 and last["segments"] == 2
    for event in progress:
        _assert_eta(event, 0.0)

    job = studio.events(job_id, "job.completed")[0]["job"]
    assert job["status"] == "completed" and job["progress"] == 1.0 and job["video_url"]
    assert [s["status"] for s in job["segments"]] == ["done", "done"]


async def test_a_shutdown_leaves_the_job_interrupted_and_the_next_start_resumes_it(tmp_path):
    settings = _settings(tmp_path)
    # A short transition, then a long one that is cut off.
    studio = await Studio(settings, suggest=_per_pair(1.2, 20)).start()
    try:
        job_id = await studio.submit(studio.upload(3))
        await studio.until(lambda: studio.events(job_id, "job.segment"))
    finally:
        await studio.stop()  # the server stopping while the second transition is generated

    assert not studio.events(job_id, "job.cancelled") and not studio.events(job_id, "job.failed")
    store = Store(settings.database_path)
    job = store.get_job(job_id)
    assert job["status"] == JobStatus.interrupted
    stopped_at = job["progress"]
    assert 0 < stopped_at < WEIGHTS_PLAIN["generate"]
    assert [s["status"] for s in store.segments(job_id)] == [SegmentStatus.done, SegmentStatus.running]
    store.close()
    first_file = output_dir(settings, job_id) / "segment_000.mp4"
    made = first_file.stat().st_mtime_ns

    again = await Studio(settings, suggest=_per_pair(1.2, 20)).start()
    try:
        # The snapshot a page gets on connecting lists it, unfinished.
        snapshot = again.socket.messages[0]
        assert snapshot["type"] == "snapshot" and [j["id"] for j in snapshot["jobs"]] == [job_id]
        assert snapshot["jobs"][0]["status"] in ("interrupted", "running")
        await again.until(lambda: again.events(job_id, "job.completed"))
    finally:
        await again.stop()

    progress = again.events(job_id, "job.progress")
    assert not [e for e in progress if e["stage"] == "generate" and e["segment"] == 1]  # not made again
    assert first_file.stat().st_mtime_ns == made
    assert min(e["progress"] for e in progress) >= round(stopped_at, 4)  # events carry progress to 4 decimals
    for event in progress:
        _assert_eta(event, stopped_at)  # the pace of this run only, not of the one cut off
    job = again.events(job_id, "job.completed")[0]["job"]
    assert job["attempts"] == 2 and job["status"] == "completed"
    final = probe(output_dir(settings, job_id) / "final.mp4")
    assert final.frames == job["params"]["total_frames"]


async def test_a_cancel_is_final_where_a_shutdown_resumes(tmp_path):
    settings = _settings(tmp_path)
    studio = await Studio(settings, suggest=_per_pair(20)).start()
    try:
        ids = studio.upload(2)
        running = await studio.submit(ids)
        waiting = await studio.submit(ids)
        await studio.until(lambda: studio.events(running, "job.progress"))

        # Queued behind it in the lane: cancelled at once, without running.
        view = await studio.queue.cancel(waiting)
        assert view.status == JobStatus.cancelled and view.finished_at
        await studio.until(lambda: studio.events(waiting, "job.cancelled"))
        assert [m["type"] for m in studio.events(waiting)] == ["job.queued", "job.cancelled"]
        # Running: it stops at its next progress report.
        await studio.queue.cancel(running)
        cancelled = (await studio.until(lambda: studio.events(running, "job.cancelled")))[0]["job"]
        assert cancelled["status"] == "cancelled" and cancelled["finished_at"] and not cancelled["video_url"]
    finally:
        await studio.stop()

    again = await Studio(settings).start()
    try:
        assert again.socket.messages[0]["jobs"] == []  # nothing unfinished: nothing resumes
        await asyncio.sleep(0.3)
        assert not again.events(running) and not again.events(waiting)
        assert [again.queue.get(j).status for j in (running, waiting)] == [JobStatus.cancelled] * 2
        # A retry is what runs a cancelled job again; its lane finishes it.
        await again.queue.retry(running)
        done = (await again.until(lambda: again.events(running, "job.completed")))[0]["job"]
        assert done["status"] == "completed" and done["attempts"] == 2
    finally:
        await again.stop()
