"""A crash mid-job loses nothing: kill -9 the server, start it again, the job finishes."""

from __future__ import annotations

import time

import httpx

from backend.utils.video_io import probe
from tests.helpers.images import scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload


def test_kill_9_mid_job_then_restart_resumes_from_finished_segments(tmp_path, tiny_framepack_dir):
    env = {"FRAMEPACK_DIR": str(tiny_framepack_dir)}
    first = StudioServer(tmp_path, env).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            ids = upload(client, [scene(64, 64, shift=10 * i, hue=30 * i) for i in range(4)])
            job_id = client.post(
                "/api/jobs",
                json={
                    "images": ids,
                    "engine": "framepack",
                    "prompt": "a cat walks",
                    "settings": {"seconds": 2.4, "quality": 40, "resolution": 64, "seed": 3},
                },
            ).json()["id"]
            job = wait_for(client, job_id, until=lambda j: j["segments"][0]["status"] == "done", timeout=120)
            assert job["status"] == "running" and job["segments"][2]["status"] == "pending"
    finally:
        first.kill()

    segment0 = first.data_dir / "outputs" / job_id / "segment_000.mp4"
    made_at = segment0.stat().st_mtime_ns
    time.sleep(0.05)

    with StudioServer(tmp_path, env) as second, httpx.Client(base_url=second.url, timeout=60) as client:
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["status"] in ("interrupted", "running", "completed")
        job = wait_for(client, job_id, timeout=180)
        assert job["status"] == "completed", job["error"]
        assert any("resumes" in w for w in job["warnings"])
        assert [s["status"] for s in job["segments"]] == ["done"] * 3
        # The segment finished before the crash was kept, not generated again.
        assert segment0.stat().st_mtime_ns == made_at
        info = probe(second.data_dir / "outputs" / job_id / "final.mp4")
        assert info.frames == 3 * 73 - 2
        # Its inputs are all still there.
        for upload_id in ids:
            assert client.get(f"/files/uploads/{upload_id}.png").status_code == 200
