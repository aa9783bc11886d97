"""A job row the studio cannot read is isolated: marked failed/broken with the reason, the rest works.

Real server, real SQLite file damaged by hand between two starts (as a bad disk write, a manual
edit or a downgrade would leave it), including a queued row, which used to stop the server from
starting at all.
"""

from __future__ import annotations

import json
import sqlite3
import time

import httpx

from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer

DAMAGE = {
    # job id: (column, stored text, status before)
    "badqueued": ("request", '{"images": ["a", "b"', "queued"),
    "badparams": ("params", "[1, 2", "completed"),
    "badkind": ("request", '"just a string"', "interrupted"),
    "badcurrent": ("current", "not json at all", "running"),
}


def _insert_damaged(db, good_request: str) -> None:
    conn = sqlite3.connect(db)
    for n, (job_id, (column, text, status)) in enumerate(DAMAGE.items()):
        row = {"request": good_request, "params": "{}", "current": None, column: text}
        conn.execute(
            "INSERT INTO jobs (id, created_at, status, engine, request, params, prompts, stage, current)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (job_id, time.time() + n, status, "morph", row["request"], row["params"], "[]", status, row["current"]),
        )
    conn.commit()
    conn.close()


def test_damaged_rows_are_marked_broken_and_the_studio_keeps_working(tmp_path):
    env = {"STUDIO_DEFAULT_ENGINE": "morph"}
    srv = StudioServer(tmp_path, env)
    with srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        files = [("files", (f"i{i}.png", encoded(scene(64, 64, shift=9 * i)), "image/png")) for i in range(2)]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        good = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 64}}).json()["id"]
        assert wait_for(c, good)["status"] == "completed"
    _insert_damaged(srv.data_dir / "studio.sqlite3", json.dumps({"images": ids}))

    # A queued damaged row used to end the start-up (exit 3): a crash loop under a restart policy.
    with StudioServer(tmp_path, env) as again, httpx.Client(base_url=again.url, timeout=60) as c:
        listed = c.get("/api/jobs")
        assert listed.status_code == 200, listed.text
        jobs = {j["id"]: j for j in listed.json()["jobs"]}
        assert set(jobs) == {good, *DAMAGE}
        assert jobs[good]["status"] == "completed" and jobs[good]["video_url"]
        for job_id, (column, _, _) in DAMAGE.items():
            job = jobs[job_id]
            assert job["status"] == "failed" and job["stage"] == "broken", job
            assert f"'{column}'" in job["error"] and "delete" in job["error"], job["error"]
            single = c.get(f"/api/jobs/{job_id}")
            assert single.status_code == 200 and single.json()["stage"] == "broken"
            retry = c.post(f"/api/jobs/{job_id}/retry")
            assert retry.status_code == 409 and "damaged" in retry.json()["detail"]
            assert c.post(f"/api/jobs/{job_id}/cancel").status_code == 409
        # The worker is alive and runs new work.
        health = c.get("/api/health")
        assert health.status_code == 200, health.text
        new = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 64}})
        assert new.status_code == 201, new.text
        assert wait_for(c, new.json()["id"])["status"] == "completed"
        # A broken job can be deleted, and then its images too.
        for job_id in DAMAGE:
            assert c.delete(f"/api/jobs/{job_id}").status_code == 204
        assert c.get("/api/jobs/badqueued").status_code == 404

    # The damaged text itself is kept as it was: nothing is thrown away behind the user's back.
    conn = sqlite3.connect(srv.data_dir / "studio.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM jobs WHERE stage = 'broken'").fetchone()[0] == 0
    conn.close()


def test_a_damaged_row_keeps_its_text_and_says_why(tmp_path):
    from backend.jobs.store import Store

    store = Store(tmp_path / "studio.sqlite3")
    store.create_job("j", "morph", {"images": ["a", "b"]}, {"segments": []}, [], 1)
    store._exec("UPDATE jobs SET warnings = ?, progress = ? WHERE id = 'j'", ("[oops", "lots"))
    job = store.get_job("j")
    assert job["status"] == "failed" and job["stage"] == "broken"
    assert "'warnings' is not valid JSON" in job["error"] and "'progress' is not a number" in job["error"]
    assert job["warnings"] == [] and job["progress"] == 0
    assert store.list_jobs(("queued",)) == []
    raw = store._raw("SELECT warnings, status FROM jobs WHERE id = 'j'")[0]
    assert raw == {"warnings": "[oops", "status": "failed"}
    store.close()
