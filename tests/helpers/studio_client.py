"""Small HTTP steps the server tests share: upload images, wait for a job to reach a state."""

from __future__ import annotations

import time

import httpx

from backend.contracts.models import FINISHED
from tests.helpers.images import encoded


def upload(client: httpx.Client, images) -> list[str]:
    files = [("files", (f"image{i}.png", encoded(img), "image/png")) for i, img in enumerate(images)]
    r = client.post("/api/uploads", files=files)
    assert r.status_code == 201, r.text
    return [u["id"] for u in r.json()["uploads"]]


def wait_for(client: httpx.Client, job_id: str, until=lambda j: j["status"] in FINISHED, timeout=180.0) -> dict:
    """The job once `until` holds for it (polled); fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if until(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach the expected state: {job}")
