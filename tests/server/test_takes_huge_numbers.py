"""Numbers in a take's URL (and the take of a `choose` body) beyond what the store can hold,
against a real server on loopback: refused as invalid (422, English / Korean), never a 500 from a
SQLite overflow; numbers in range still reach the take rules."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer

HUGE = [2**63, 2**63 + 1, 2**64, 10**30, -(2**63) - 1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with StudioServer(tmp_path_factory.mktemp("paths"), {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def job_id(client):
    files = [("files", (f"i{i}.png", encoded(scene(64, 64, shift=8 * i)), "image/png")) for i in range(2)]
    ids = [u["id"] for u in client.post("/api/uploads", files=files).json()["uploads"]]
    job = client.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 64}}).json()
    assert wait_for(client, job["id"])["status"] == "completed"
    return job["id"]


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == "invalid_request" and "/" in body["detail"], body  # English / Korean


@pytest.mark.parametrize("take", HUGE)
def test_a_take_number_too_large_for_the_store_is_invalid_not_a_crash(client, job_id, take):
    _refused(client.post(f"/api/jobs/{job_id}/transitions/0/choose", json={"take": take}))
    _refused(client.delete(f"/api/jobs/{job_id}/transitions/0/takes/{take}"))
    _refused(client.delete(f"/api/jobs/{job_id}/transitions/{take}/takes/1"))
    _refused(client.post(f"/api/jobs/{job_id}/transitions/{take}/choose", json={"take": 1}))
    _refused(client.post(f"/api/jobs/{job_id}/transitions/{take}/takes", json={}))


def test_numbers_in_range_still_reach_the_rules(client, job_id):
    r = client.post(f"/api/jobs/{job_id}/transitions/0/choose", json={"take": 2**31 - 1})
    assert r.status_code == 404 and r.json()["code"] == "take_not_found", r.text
    r = client.delete(f"/api/jobs/{job_id}/transitions/0/takes/1")
    assert r.status_code == 409 and r.json()["code"] == "take_is_last", r.text
    r = client.post(f"/api/jobs/{job_id}/transitions/1/choose", json={"take": 1})
    assert r.status_code == 404 and r.json()["code"] == "transition_not_found", r.text
    assert client.post(f"/api/jobs/{job_id}/transitions/0/choose", json={"take": 1}).status_code == 200
