"""The job worker outlives any one job: faults inside a job end that job, never the worker.

The app runs in-process (Starlette's TestClient runs its lifespan: real SQLite store, real morph
engine, real files). Faults that cannot be produced on demand here (a database write failing on a
full disk, an event that cannot be built, a GPU thread that hangs) are injected at the store,
the WebSocket fan-out or the runner, the boundaries where the real faults surface.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from functools import partial

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.utils.config import Settings
from tests.helpers.jobs import wait_for
from tests.helpers.uploads import upload_scenes


@pytest.fixture
def studio(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(
        data_dir=tmp_path / "data",
        models_dir=tmp_path / "models",
        device="cpu",
        translate_service_url="127.0.0.1:9",
        worker_stall_s=0.5,
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client


def _upload(client, n=2):
    return upload_scenes(client, n)


def _submit(client, ids):
    r = client.post(
        "/api/jobs", json={"images": ids, "engine": "morph", "settings": {"resolution": 64, "seconds": 1, "seed": 1}}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


_wait = partial(wait_for, timeout=30.0)  # until the job is finished


def _wait_health(client, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/api/health")
        if predicate(r):
            return r
        time.sleep(0.05)
    raise AssertionError(f"health never matched; last: {r.status_code} {r.text}")


def test_a_failed_state_write_is_retried_and_the_next_job_runs(studio):
    """Disk full while a job fails: the failure is stored once the disk has room, health says
    why meanwhile, and the job queued behind it still runs."""
    app = studio.app
    store = app.state.store
    real_update = store.update_job
    disk_full = threading.Event()
    disk_full.set()

    def update_job(job_id, **fields):
        if disk_full.is_set() and fields.get("status") == "failed":
            raise sqlite3.OperationalError("database or disk is full")
        return real_update(job_id, **fields)

    store.update_job = update_job
    runner = app.state.queue.runner
    real_run = runner.run
    doomed: set[str] = set()

    def run(job_id, token, *rest):
        if job_id in doomed:
            raise FileNotFoundError("input image is missing")
        return real_run(job_id, token, *rest)

    runner.run = run
    ids = _upload(studio)
    # Held until both are queued, so the first one's failure meets a queue with work behind it.
    release = threading.Event()
    real_translate = app.state.queue.lanes._translate

    async def translate(job):
        while not release.is_set():
            await asyncio.sleep(0.01)
        return await real_translate(job)

    app.state.queue.lanes._translate = translate
    first = _submit(studio, ids)
    doomed.add(first)
    second = _submit(studio, ids)
    release.set()

    r = _wait_health(studio, lambda r: r.json()["worker"]["state"] == "cannot_save")
    assert r.status_code == 503
    assert r.json()["status"] == "degraded"
    assert "disk is full" in r.json()["worker"]["state_error"]

    disk_full.clear()
    failed = _wait(studio, first)
    assert failed["status"] == "failed" and "missing" in failed["error"]
    assert _wait(studio, second)["status"] == "completed"
    health = studio.get("/api/health")
    assert health.status_code == 200 and health.json()["worker"]["state"] == "idle"


def test_an_event_that_cannot_be_sent_does_not_stop_the_worker(studio):
    ws = studio.app.state.ws
    real_publish = ws.publish

    def publish(event):
        if getattr(event, "type", None) == "job.started":
            raise RuntimeError("cannot build this event")
        return real_publish(event)

    ws.publish = publish
    ids = _upload(studio)
    jobs = [_submit(studio, ids) for _ in range(2)]
    assert [_wait(studio, j)["status"] for j in jobs] == ["completed", "completed"]


def test_an_error_outside_the_stages_fails_that_job_only(studio):
    """A fault before the job's stages start (here: marking it running) ends that job, not the
    worker; the cancel route still answers for real afterwards."""
    store = studio.app.state.store
    real_update = store.update_job
    broken = {"armed": True}

    def update_job(job_id, **fields):
        if broken["armed"] and fields.get("status") == "running":
            broken["armed"] = False
            raise sqlite3.OperationalError("disk I/O error")
        return real_update(job_id, **fields)

    store.update_job = update_job
    ids = _upload(studio)
    first, second = _submit(studio, ids), _submit(studio, ids)
    job = _wait(studio, first)
    assert job["status"] == "failed" and "disk I/O error" in job["error"]
    assert _wait(studio, second)["status"] == "completed"
    worker = studio.get("/api/health").json()["worker"]
    assert worker["ok"] and worker["restarts"] == 0


class _LoopBug(BaseException):
    """Something no per-job handler catches, as a bug in the loop itself would be."""


def test_the_supervisor_restarts_a_worker_loop_that_ended(studio):
    queue = studio.app.state.queue
    real_run_one = queue.lanes._run_one
    calls = {"n": 0}

    async def run_one(loop, job):
        calls["n"] += 1
        if calls["n"] == 1:
            raise _LoopBug("the loop broke")
        return await real_run_one(loop, job)

    queue.lanes._run_one = run_one
    ids = _upload(studio)
    job_id = _submit(studio, ids)
    # The job that was in hand when the loop broke is picked up again after the restart.
    assert _wait(studio, job_id)["status"] == "completed"
    worker = studio.get("/api/health").json()["worker"]
    assert worker["restarts"] == 1 and "the loop broke" in worker["last_error"]
    assert _wait(studio, _submit(studio, ids))["status"] == "completed"


def test_a_worker_silent_past_the_stall_limit_is_reported(studio):
    """A GPU thread that hangs (no step, no event) shows as stalled, 503, until it moves again."""
    queue = studio.app.state.queue
    real_run = queue.runner.run
    release = threading.Event()

    def hung_run(job_id, token, *rest):
        release.wait(20)
        return real_run(job_id, token, *rest)

    queue.runner.run = hung_run
    ids = _upload(studio)
    job_id = _submit(studio, ids)
    r = _wait_health(studio, lambda r: r.json()["worker"]["state"] == "stalled")
    assert r.status_code == 503 and r.json()["worker"]["running"] == job_id
    release.set()
    assert _wait(studio, job_id)["status"] == "completed"
    assert studio.get("/api/health").status_code == 200
