"""The queue in the user's hands, on a real server: the stored position decides which waiting job
a lane runs next (moves included, and after a restart), a queued job's settings can be edited
before it starts, and "cancel all queued" leaves running jobs alone.

A slow morph job (11 long transitions) holds the morph lane while the test queues and moves short
jobs behind it; no assertion depends on how long anything takes: the move API refuses a job that
is not waiting, so a slow job that ended too early fails the test loudly instead of passing it."""

from __future__ import annotations

import httpx
import pytest

from backend.utils.video_io import probe
from tests.helpers.images import scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload

ENV = {"STUDIO_DEFAULT_ENGINE": "morph"}
SHORT = {"seconds": 0.5, "quality": 40, "resolution": 64, "seed": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with StudioServer(tmp_path_factory.mktemp("queue"), ENV) as srv:
        yield srv


def _slow_job(client: httpx.Client) -> str:
    """A morph job that runs for a long while (cancelled by the test once it has served)."""
    ids = upload(client, [scene(64, 64, shift=3 * i, hue=20 * i) for i in range(12)])
    body = {"images": ids, "engine": "morph", "settings": {"seconds": 20, "quality": 40, "resolution": 384}}
    job_id = client.post("/api/jobs", json=body).json()["id"]
    wait_for(client, job_id, until=lambda j: j["status"] == "running", timeout=60)
    return job_id


def _short_jobs(client: httpx.Client, n: int) -> list[str]:
    ids = upload(client, [scene(64, 64), scene(64, 64, shift=12, hue=40)])
    out = []
    for k in range(n):
        r = client.post("/api/jobs", json={"images": ids, "engine": "morph", "prompt": f"job {k}", "settings": SHORT})
        assert r.status_code == 201, r.text
        out.append(r.json()["id"])
    return out


def _waiting_order(client: httpx.Client, among: list[str]) -> list[str]:
    jobs = [client.get(f"/api/jobs/{i}").json() for i in among]
    assert all(j["status"] == "queued" for j in jobs), [j["status"] for j in jobs]
    return [j["id"] for j in sorted(jobs, key=lambda j: j["position"])]


def _started_order(client: httpx.Client, ids: list[str]) -> list[str]:
    jobs = [wait_for(client, i, timeout=120) for i in ids]
    assert all(j["status"] == "completed" for j in jobs), [(j["status"], j["error"]) for j in jobs]
    return [j["id"] for j in sorted(jobs, key=lambda j: j["started_at"])]


def test_moves_decide_the_run_order(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        slow = _slow_job(client)
        a, b, c, d = _short_jobs(client, 4)
        assert _waiting_order(client, [a, b, c, d]) == [a, b, c, d]  # submitted order by default

        r = client.post(f"/api/jobs/{d}/move", json={"direction": "up"})
        assert r.status_code == 200, r.text
        assert [j["id"] for j in r.json()["jobs"]] == [a, b, d, c]
        assert client.post(f"/api/jobs/{a}/move", json={"direction": "down"}).status_code == 200
        r = client.post(f"/api/jobs/{c}/move", json={"before": b})
        assert [j["id"] for j in r.json()["jobs"]] == [c, b, a, d]
        # The first stays first when moved up; a running job cannot be moved, nor moved before.
        assert [j["id"] for j in client.post(f"/api/jobs/{c}/move", json={"direction": "up"}).json()["jobs"]] == [
            c,
            b,
            a,
            d,
        ]
        r = client.post(f"/api/jobs/{slow}/move", json={"direction": "down"})
        assert r.status_code == 409 and r.json()["code"] == "job_not_queued"
        r = client.post(f"/api/jobs/{a}/move", json={"before": slow})
        assert r.status_code == 409 and r.json()["code"] == "job_not_queued"
        assert client.post(f"/api/jobs/{a}/move", json={"direction": "sideways"}).status_code == 422
        assert client.post("/api/jobs/nope/move", json={"direction": "up"}).status_code == 404
        stored = _waiting_order(client, [a, b, c, d])
        assert stored == [c, b, a, d]

        client.post(f"/api/jobs/{slow}/cancel")
        # The rule: the lane started them in the stored order.
        assert _started_order(client, [a, b, c, d]) == stored


def test_editing_a_queued_job_changes_what_it_makes(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        slow = _slow_job(client)
        (job_id,) = _short_jobs(client, 1)
        before = client.get(f"/api/jobs/{job_id}").json()
        assert before["params"]["segments"][0]["frames"] == 37  # 0.5 s: one section
        edit = {"settings": {"seconds": 2.4, "quality": 90, "resolution": 96, "seed": 5}, "prompt": "a slow turn"}
        r = client.patch(f"/api/jobs/{job_id}", json=edit)
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["status"] == "queued" and job["position"] == before["position"]
        assert job["settings"]["quality"] == 90 and job["params"]["steps"] == 23
        assert job["params"]["segments"][0]["frames"] == 73 and job["params"]["seed"] == 5
        assert job["prompts"][0]["original"] == "a slow turn"
        # Prompts stay one per pair; a running job is not edited.
        bad = client.patch(f"/api/jobs/{job_id}", json={"prompts": ["one", "two"]})
        assert bad.status_code == 422
        busy = client.patch(f"/api/jobs/{slow}", json={"settings": {"quality": 10}})
        assert busy.status_code == 409 and busy.json()["code"] == "job_not_queued"

        client.post(f"/api/jobs/{slow}/cancel")
        done = wait_for(client, job_id, timeout=120)
        assert done["status"] == "completed", done["error"]
        info = probe(server.data_dir / "outputs" / job_id / "final.mp4")
        assert info.frames == 73 and info.width == 96
        # A finished job is not edited either.
        again = client.patch(f"/api/jobs/{job_id}", json={"settings": {"quality": 10}})
        assert again.status_code == 409 and again.json()["code"] == "job_not_queued"


def test_cancel_all_queued_leaves_the_running_job_alone(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        slow = _slow_job(client)
        queued = _short_jobs(client, 3)
        r = client.post("/api/jobs/cancel-queued")
        assert r.status_code == 200, r.text
        assert sorted(r.json()["cancelled"]) == sorted(queued)
        assert all(client.get(f"/api/jobs/{i}").json()["status"] == "cancelled" for i in queued)
        assert client.get(f"/api/jobs/{slow}").json()["status"] == "running"
        assert client.post("/api/jobs/cancel-queued").json()["cancelled"] == []
        client.post(f"/api/jobs/{slow}/cancel")
        assert wait_for(client, slow, timeout=60)["status"] == "cancelled"


def test_the_order_survives_a_restart(tmp_path):
    first = StudioServer(tmp_path, ENV).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            slow = _slow_job(client)
            a, b, c = _short_jobs(client, 3)
            client.post(f"/api/jobs/{c}/move", json={"before": a})
            client.post(f"/api/jobs/{a}/move", json={"direction": "down"})
            stored = _waiting_order(client, [a, b, c])
            assert stored == [c, b, a]
    finally:
        first.stop()

    with StudioServer(tmp_path, ENV) as second, httpx.Client(base_url=second.url, timeout=60) as client:
        # The interrupted slow job resumes first (it was first in line); it has served.
        client.post(f"/api/jobs/{slow}/cancel")
        assert _started_order(client, [a, b, c]) == stored
