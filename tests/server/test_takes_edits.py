"""Editing a finished job's takes never costs it its video, never generates on a rebuild, stays
bounded, and answers a failing data folder or a damaged row with the documented error body.

Real server on loopback (or the real app in process where SQLite must be made to refuse writes),
the morph engine, real files.
"""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.utils.config import Settings
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload_scenes

MORPH = {"STUDIO_DEFAULT_ENGINE": "morph"}


def _finished_job(c, n: int = 3, resolution: int = 64) -> dict:
    ids = upload_scenes(c, n, size=(resolution, resolution), hue=40)
    body = {"images": ids, "engine": "morph", "settings": {"seconds": 1.2, "resolution": resolution}}
    answer = c.post("/api/jobs", json=body)
    assert answer.status_code == 201, answer.text
    job = wait_for(c, answer.json()["id"])
    assert job["status"] == "completed" and job["video_url"], job
    return job


def _when_idle(request, timeout: float = 60.0):
    """The answer to a take command once the job's lane has let it go (a finished job's lane may
    still be releasing its engine for a moment: `job_busy`)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = request()
        if answer.status_code != 409 or answer.json().get("code") != "job_busy" or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial." in p.name or ".tagged." in p.name)


def test_a_cancelled_reroll_keeps_the_video_drops_the_cut_take_and_rebuild_generates_nothing(tmp_path):
    with StudioServer(tmp_path, MORPH) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        job = _finished_job(c, resolution=128)
        job_id, video_url = job["id"], job["video_url"]
        folder = srv.data_dir / "outputs" / job_id
        final = folder / "final.mp4"
        made = final.stat().st_mtime_ns
        # A long take (20 s = 600 frames), so it is still being made when the cancel comes.
        answer = c.post(f"/api/jobs/{job_id}/transitions/0/takes", json={"seconds": 20, "seed": 5})
        assert answer.status_code == 202, answer.text
        running = wait_for(c, job_id, until=lambda j: j["transitions"][0]["takes"][-1]["status"] == "running")
        # While it runs, the finished video is still shown.
        assert running["video_url"] == video_url
        cancelled = c.post(f"/api/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        job = wait_for(c, job_id, until=lambda j: j["status"] in ("completed", "failed", "cancelled"))
        assert job["status"] == "completed" and job["video_url"] == video_url, job
        assert final.stat().st_mtime_ns == made
        assert [t["take"] for t in job["transitions"][0]["takes"]] == [1]  # the cut-off take is gone
        assert any("cancelled" in w for w in job["warnings"]), job["warnings"]
        assert _leftovers(folder) == []
        assert c.get(video_url).status_code == 200

        # Rebuild joins the chosen takes again and makes no take.
        rebuild = _when_idle(lambda: c.post(f"/api/jobs/{job_id}/rebuild"))
        assert rebuild.status_code == 202, rebuild.text
        job = wait_for(c, job_id)
        assert job["status"] == "completed", job
        assert [[t["take"] for t in tr["takes"]] for tr in job["transitions"]] == [[1], [1]]


def test_a_failed_reroll_is_the_takes_failure_not_the_jobs(tmp_path):
    with StudioServer(tmp_path, MORPH) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        job = _finished_job(c)
        job_id, video_url = job["id"], job["video_url"]
        # The first image disappears from disk: the re-roll of transition 1 cannot be made.
        (srv.data_dir / "uploads" / f"{job['images'][0]['id']}.png").unlink()
        assert c.post(f"/api/jobs/{job_id}/transitions/0/takes", json={"seed": 7}).status_code == 202
        job = wait_for(c, job_id, until=lambda j: j["status"] != "queued" and j["stage"] in ("done", "failed"))
        assert job["status"] == "completed" and job["video_url"] == video_url, job
        assert [t["status"] for t in job["transitions"][0]["takes"]] == ["done", "failed"]
        assert job["transitions"][0]["chosen"] == 1
        assert any("failed" in w for w in job["warnings"]), job["warnings"]
        # A rebuild makes nothing, not even the failed take.
        rebuild = _when_idle(lambda: c.post(f"/api/jobs/{job_id}/rebuild"))
        assert rebuild.status_code == 202, rebuild.text
        job = wait_for(c, job_id, until=lambda j: j["status"] != "queued" and j["stage"] in ("done", "failed"))
        assert job["status"] == "completed", job
        assert [t["status"] for t in job["transitions"][0]["takes"]] == ["done", "failed"]


def test_takes_are_capped_and_the_cap_is_said(tmp_path):
    with (
        StudioServer(tmp_path, {**MORPH, "STUDIO_MAX_TAKES_KEPT": "2"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        job_id = _finished_job(c)["id"]
        assert c.post(f"/api/jobs/{job_id}/transitions/1/takes", json={}).status_code == 202
        wait_for(c, job_id)
        again = c.post(f"/api/jobs/{job_id}/transitions/1/takes", json={})
        assert again.status_code == 409, again.text
        body = again.json()
        assert body["code"] == "take_limit_reached" and body["params"]["limit"] == 2
        assert "/" in body["detail"] and "테이크" in body["detail"]
        # Deleting one makes room again.
        job = c.get(f"/api/jobs/{job_id}").json()
        other = next(t["take"] for t in job["transitions"][1]["takes"] if not t["chosen"])
        assert c.delete(f"/api/jobs/{job_id}/transitions/1/takes/{other}").status_code == 200
        assert c.post(f"/api/jobs/{job_id}/transitions/1/takes", json={}).status_code == 202
        wait_for(c, job_id)


def test_reroll_and_rebuild_obey_the_space_guard(tmp_path):
    with StudioServer(tmp_path, MORPH) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        job_id = _finished_job(c)["id"]
    # The same data folder, now over its quota: new work is refused as uploads and jobs are.
    with (
        StudioServer(tmp_path, {**MORPH, "STUDIO_DATA_QUOTA_MB": "0.001"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        for answer in (
            c.post(f"/api/jobs/{job_id}/transitions/0/takes", json={}),
            c.post(f"/api/jobs/{job_id}/rebuild"),
        ):
            assert answer.status_code == 507, answer.text
            assert answer.json()["code"] == "quota_used"
        assert c.get(f"/api/jobs/{job_id}").json()["status"] == "completed"


def test_deleting_a_take_removes_its_partial_files_and_moves_the_preview_to_the_pick(tmp_path):
    with StudioServer(tmp_path, MORPH) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        job_id = _finished_job(c)["id"]
        folder = srv.data_dir / "outputs" / job_id
        assert c.post(f"/api/jobs/{job_id}/transitions/1/takes", json={"seed": 3}).status_code == 202
        job = wait_for(c, job_id)
        assert job["preview_url"].endswith("segment_001_take_2.mp4"), job["preview_url"]
        # A write of take 2 that was cut off once left its partial file behind.
        (folder / "segment_001_take_2.partial.mp4").write_bytes(b"cut off")
        assert c.post(f"/api/jobs/{job_id}/transitions/1/choose", json={"take": 1}).status_code == 200
        assert c.delete(f"/api/jobs/{job_id}/transitions/1/takes/2").status_code == 200
        job = c.get(f"/api/jobs/{job_id}").json()
        assert c.get(job["preview_url"]).status_code == 200, job["preview_url"]
        assert not (folder / "segment_001_take_2.mp4").exists()
        assert _leftovers(folder) == []
        # A run sweeps what a killed run left half written.
        (folder / "segment_000_take_9.partial.mp4").write_bytes(b"cut off")
        assert c.post(f"/api/jobs/{job_id}/rebuild").status_code == 202
        wait_for(c, job_id)
        assert _leftovers(folder) == []


@pytest.fixture
def app_client(tmp_path):
    data = tmp_path / "data"
    settings = Settings(
        data_dir=data,
        models_dir=tmp_path / "models",
        device="cpu",
        default_engine="morph",
        translate_service_url="127.0.0.1:9",
        min_free_mb=0,
        _env_file=None,
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client


def _wait_in_process(client, job_id: str, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(job)


def test_a_data_folder_that_refuses_writes_answers_503_naming_it(app_client):
    c = app_client
    job_id = _finished_job_in_process(c)
    store = c.app.state.store
    store._conn.execute("PRAGMA query_only = ON")  # SQLite itself now refuses every write
    try:
        ids = _upload_ids_for(c, job_id)
        answers = {
            "create": c.post("/api/jobs", json={"images": ids, "engine": "morph"}),
            "reroll": c.post(f"/api/jobs/{job_id}/transitions/0/takes", json={}),
            "delete": c.delete(f"/api/jobs/{job_id}"),
        }
    finally:
        store._conn.execute("PRAGMA query_only = OFF")
    for what, answer in answers.items():
        assert answer.status_code == 503, (what, answer.text)
        body = answer.json()
        assert body["code"] == "store_unwritable", (what, body)
        assert "readonly" in body["params"]["cause"] and "STUDIO_DATA_DIR" in body["detail"], (what, body)
    assert c.get(f"/api/jobs/{job_id}").json()["status"] == "completed"


def test_a_failed_begin_is_reported_as_itself(tmp_path):
    from backend.jobs.store import Store

    store = Store(tmp_path / "studio.sqlite3")
    store.create_job("j", "morph", {"images": []}, {"segments": [{"seed": 1}]}, [], 1)
    store._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(sqlite3.OperationalError) as info:
        store.add_take("j", 0, {"seed": 2})
    assert "readonly" in str(info.value) and "no transaction" not in str(info.value)


DAMAGED_SHAPES = {
    "params_empty": ("UPDATE jobs SET params = '{}' WHERE id = ?",),
    "segments_not_a_list": ("UPDATE jobs SET params = json_set(params, '$.segments', 'two') WHERE id = ?",),
    "take_number_not_an_integer": ("UPDATE takes SET take = 'one' WHERE job_id = ? AND idx = 0",),
}


@pytest.mark.parametrize("shape", sorted(DAMAGED_SHAPES))
def test_damaged_rows_isolate_the_job_on_reroll_and_rebuild(app_client, shape):
    c = app_client
    job_id = _finished_job_in_process(c)
    (sql,) = DAMAGED_SHAPES[shape]
    c.app.state.store._exec(sql, (job_id,))
    for answer in (c.post(f"/api/jobs/{job_id}/transitions/0/takes", json={}), c.post(f"/api/jobs/{job_id}/rebuild")):
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "job_broken_no_takes"
    job = c.get(f"/api/jobs/{job_id}").json()
    assert (job["status"], job["stage"]) == ("failed", "broken"), job
    assert c.get("/api/jobs").status_code == 200


def _finished_job_in_process(c) -> str:
    ids = upload_scenes(c, 3, hue=40)
    answer = c.post(
        "/api/jobs", json={"images": ids, "engine": "morph", "settings": {"seconds": 1.2, "resolution": 64}}
    )
    assert answer.status_code == 201, answer.text
    job = _wait_in_process(c, answer.json()["id"])
    assert job["status"] == "completed", job
    return job["id"]


def _upload_ids_for(c, job_id: str) -> list[str]:
    return [image["id"] for image in c.get(f"/api/jobs/{job_id}").json()["images"]]
