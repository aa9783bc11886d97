"""The studio core end to end: a real uvicorn server, real WebSocket clients, real mp4 files."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
import websockets

from backend.pipeline.preprocessor import fit_image
from backend.utils.video_io import probe, read_frames
from tests.helpers.images import scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload


@pytest.fixture(scope="module")
def server_env(tiny_framepack_dir):
    """The folder's `server` (and `client`) run the tiny FramePack model."""
    return {"FRAMEPACK_DIR": str(tiny_framepack_dir)}


def test_health_reports_engines_and_device(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["device"]["type"] == "cpu"
    assert body["engines"]["framepack"]["ready"] is True
    assert body["engines"]["morph"]["ready"] is True
    # No post-processing weights in the test's models folder: each is named with what happens.
    missing = body["postprocess"]["missing"]
    assert "realesrgan-x4plus" in missing and "downloads on first use" in missing["realesrgan-x4plus"]


def test_health_names_a_missing_framepack_folder(tmp_path):
    with StudioServer(tmp_path, {"FRAMEPACK_DIR": str(tmp_path / "nowhere")}) as srv:
        fp = httpx.get(srv.url + "/api/health").json()["engines"]["framepack"]
    assert fp["ready"] is False and "does not exist" in fp["reason"] and "setup.sh" in fp["reason"]


def test_framepack_job_streams_ordered_events_and_makes_the_expected_video(server, client):
    ids = upload(client, [scene(96, 80, shift=8 * i, hue=50 * i) for i in range(3)])

    async def scenario():
        async with websockets.connect(server.ws_url) as ws:
            first = json.loads(await ws.recv())
            assert first["type"] == "snapshot"
            r = client.post(
                "/api/jobs",
                json={
                    "images": ids,
                    "prompts": ["a cat walks", "camera turns slowly"],
                    "engine": "framepack",
                    "settings": {"seconds": 2.4, "quality": 10, "strength": 80, "resolution": 64, "seed": 7},
                },
            )
            assert r.status_code == 201, r.text
            job_id = r.json()["id"]
            events = []
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 180))
                if msg.get("job_id") == job_id:
                    events.append(msg)
                if msg["type"] in ("job.completed", "job.failed") and msg.get("job_id") == job_id:
                    return job_id, events

    job_id, events = asyncio.run(scenario())
    types = [e["type"] for e in events]
    assert types[0] == "job.queued" and types[1] == "job.started" and types[-1] == "job.completed", types
    assert "job.preview" in types
    progress = [e for e in events if e["type"] == "job.progress"]
    fractions = [e["progress"] for e in progress]
    assert fractions == sorted(fractions), "progress must never go backwards"
    gen = [e for e in progress if e["stage"] == "generate"]
    assert {e["segment"] for e in gen} == {1, 2}
    assert {e["section"] for e in gen} == {1, 2}
    assert max(e["step"] for e in gen) == gen[0]["steps"] == 10  # quality 10 → 10 steps
    # Within a section the step index restarts and rises.
    seg1_sec1 = [e["step"] for e in gen if e["segment"] == 1 and e["section"] == 1]
    assert seg1_sec1 == sorted(seg1_sec1)

    job = client.get(f"/api/jobs/{job_id}").json()
    assert job["status"] == "completed" and job["progress"] == 1.0
    assert [s["status"] for s in job["segments"]] == ["done", "done"]
    assert job["params"]["segments"][0]["end_embed_weights"] == [0.3, 0.7]
    assert [p["english"] for p in job["prompts"]] == ["a cat walks", "camera turns slowly"]
    video = server.data_dir / "outputs" / job_id / "final.mp4"
    info = probe(video)
    # 2 sections × 9 latent frames × 4 + 1 = 73 per segment; the shared frame appears once.
    assert (info.width, info.height, info.fps, info.frames) == (64, 64, 30.0, 73 + 73 - 1)
    params = json.loads(info.metadata["studio_params"])
    assert params["seed"] == 7 and params["steps"] == 10
    assert json.loads(info.metadata["studio_prompts"]) == ["a cat walks", "camera turns slowly"]

    # The video URL serves the file with HTTP Range.
    r = client.get(job["video_url"], headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and len(r.content) == 100
    assert r.headers["content-type"] == "video/mp4"


def test_morph_job_starts_and_ends_on_the_input_images(server, client):
    images = [scene(120, 90, shift=0), scene(120, 90, shift=20, hue=60), scene(120, 90, shift=-10, hue=120)]
    ids = upload(client, images)
    r = client.post(
        "/api/jobs",
        json={"images": ids, "engine": "morph", "prompt": "", "settings": {"seconds": 1.2, "resolution": 96}},
    )
    assert r.status_code == 201
    job = wait_for(client, r.json()["id"])
    assert job["status"] == "completed", job["error"]
    w, h = job["params"]["width"], job["params"]["height"]
    frames = read_frames(server.data_dir / "outputs" / job["id"] / "final.mp4")
    per_segment = job["params"]["segments"][0]["frames"]
    assert frames.shape == (2 * per_segment - 1, h, w, 3)
    expected_first = fit_image(images[0], w, h, "crop").astype(float)
    expected_last = fit_image(images[-1], w, h, "crop").astype(float)
    assert np.abs(frames[0] - expected_first).mean() < 0.05 * 255
    assert np.abs(frames[-1] - expected_last).mean() < 0.05 * 255
    # The middle keyframe sits exactly where the first segment ends.
    expected_mid = fit_image(images[1], w, h, "crop").astype(float)
    assert np.abs(frames[per_segment - 1] - expected_mid).mean() < 0.05 * 255


def test_late_client_gets_a_snapshot_of_unfinished_jobs(server, client):
    ids = upload(client, [scene(64, 64), scene(64, 64, shift=10)])
    r = client.post(
        "/api/jobs",
        json={"images": ids, "engine": "framepack", "settings": {"seconds": 4.8, "quality": 100, "resolution": 64}},
    )
    job_id = r.json()["id"]
    wait_for(client, job_id, until=lambda j: j["status"] == "running")

    async def snapshot():
        async with websockets.connect(server.ws_url) as ws:
            return json.loads(await ws.recv())

    snap = asyncio.run(snapshot())
    assert snap["type"] == "snapshot"
    assert job_id in [j["id"] for j in snap["jobs"]]
    client.post(f"/api/jobs/{job_id}/cancel")
    wait_for(client, job_id)


def test_cancel_stops_the_running_job_only(server, client):
    ids = upload(client, [scene(64, 64), scene(64, 64, shift=12), scene(64, 64, shift=24)])
    slow = {
        "images": ids,
        "engine": "framepack",
        "prompt": "a dog runs",
        "settings": {"seconds": 4.8, "quality": 100, "resolution": 64},
    }
    first = client.post("/api/jobs", json=slow).json()["id"]
    second = client.post("/api/jobs", json={**slow, "engine": "morph"}).json()["id"]
    wait_for(client, first, until=lambda j: (j.get("current") or {}).get("step") or 0 >= 2)
    t0 = time.monotonic()
    r = client.post(f"/api/jobs/{first}/cancel")
    assert r.status_code == 200
    job = wait_for(client, first, timeout=30)
    assert job["status"] == "cancelled"
    assert time.monotonic() - t0 < 10, "cancel must land within one denoising step"
    assert job["video_url"] is None
    # Inputs are kept; the other job was not touched and still runs to the end.
    for upload_id in ids:
        assert client.get(f"/files/uploads/{upload_id}.png").status_code == 200
    other = wait_for(client, second)
    assert other["status"] == "completed"
    # Cancelling a finished job is refused with a clear message; a queued job cancels at once.
    r = client.post(f"/api/jobs/{first}/cancel")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]


def test_delete_removes_outputs_but_keeps_uploads(server, client):
    ids = upload(client, [scene(64, 64), scene(64, 64, shift=9)])
    job_id = client.post(
        "/api/jobs", json={"images": ids, "engine": "morph", "settings": {"resolution": 64, "seconds": 1.2}}
    ).json()["id"]
    wait_for(client, job_id)
    folder = server.data_dir / "outputs" / job_id
    assert folder.exists()
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert not folder.exists()
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert client.get(f"/files/uploads/{ids[0]}.png").status_code == 200


def test_params_preview_resolves_sliders(client):
    ids = upload(client, [scene(160, 90), scene(160, 90, shift=5)])
    r = client.post("/api/params", json={"images": ids, "settings": {"seconds": 5, "quality": 100, "strength": 0}})
    assert r.status_code == 200
    p = r.json()["params"]
    assert p["steps"] == 25 and p["crf"] == 16 and p["cache"] == "off"
    assert p["segments"][0]["sections"] == 4 and p["segments"][0]["frames"] == 145
    assert p["width"] > p["height"] and p["width"] % 16 == 0 and p["height"] % 16 == 0
    assert set(p["segments"][0]["end_embed_weights"]) == {0.5}
    assert p["seed"] is None  # drawn when the job is submitted, not in a preview
