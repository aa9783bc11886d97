"""Wan jobs through the real studio (uvicorn on loopback) with the tiny random Wan pipeline of the
real architecture installed in the models folder, as `--only wan` lays it out (the diffusers-layout
folder and the LightX2V LoRA file), loaded by the studio's own loader on the CPU.

Three images make two transitions of 4k+1 frames at 16 fps, best of 2 each, every take scored; a
re-roll of one transition leaves the other's file alone; a cancel lands within a step; and a Wan job
where the model is not installed is refused with the command that installs it."""

from __future__ import annotations

import httpx
import pytest

from backend.pipeline.wan import wan_spec
from backend.utils.model_registry import WAN_FOLDER, WAN_LORA_FILE, WAN_LORA_FOLDER
from backend.utils.video_io import probe
from tests.helpers.jobs import wait_for, why_not_done
from tests.helpers.server import StudioServer
from tests.helpers.tiny_wan import lightx2v_style_lora, save_tiny_pipeline
from tests.helpers.uploads import upload_scenes

SECONDS = 0.5  # 9 frames a transition: 4 × 2 + 1


@pytest.fixture(scope="module")
def wan_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan_jobs")
    save_tiny_pipeline(root / "models" / WAN_FOLDER)
    lightx2v_style_lora(root / "models" / WAN_LORA_FOLDER / WAN_LORA_FILE)
    with StudioServer(root) as srv:
        yield srv


@pytest.fixture
def c(wan_server):
    with httpx.Client(base_url=wan_server.url, timeout=60) as client:
        yield client


def submit(c, ids, **settings) -> str:
    body = {"images": ids, "engine": "wan", "prompt": "a cat walks", "settings": {"resolution": 64, **settings}}
    r = c.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_health_says_wan_is_installed(c):
    wan = c.get("/api/health").json()["engines"]["wan"]
    assert wan["installed"] is True and wan["ready"] is True
    assert wan["model"] == "wan2.1-flf2v"  # STUDIO_WAN_MODEL's default


def test_three_images_best_of_two_scored_and_a_reroll(wan_server, c):
    ids = upload_scenes(c, 3, size=(96, 80), shift=8, hue=50)
    # quality 10: the fast mode (4 steps, guidance 1.0, the LoRA on), best of 2 per transition.
    job_id = submit(c, ids, seconds=SECONDS, quality=10, seed=7, takes_per_transition=2)
    job = wait_for(c, job_id, timeout=300)
    assert job["status"] == "completed", why_not_done(job, wan_server)
    assert job["engine"] == "wan"
    params = job["params"]
    assert params["engine"] == "wan" and params["fps"] == wan_spec.NATIVE_FPS and params["fast"] is True
    assert params["steps"] == wan_spec.FAST_STEPS
    assert len(job["transitions"]) == 2
    for transition in job["transitions"]:
        takes = transition["takes"]
        assert [t["take"] for t in takes] == [1, 2] and all(t["status"] == "done" for t in takes)
        assert takes[0]["seed"] != takes[1]["seed"]
        assert all(t["frames"] == 9 and wan_spec.is_frame_count(t["frames"]) for t in takes)
        scores = [t["overall"] for t in takes]
        assert all(isinstance(s, (int, float)) for s in scores), takes
        assert transition["chosen"] == 1 + scores.index(max(scores))  # ties go to the lower take

    folder = wan_server.data_dir / "outputs" / job_id
    final = probe(folder / "final.mp4")
    assert round(final.fps) == 16
    assert final.frames == 2 * 9 - 1 == params["total_frames"]  # one shared key frame at the seam
    assert final.width % 16 == 0 and final.height % 16 == 0
    first = folder / "segment_000.mp4"
    assert round(probe(first).fps) == 16 and probe(first).frames == 9
    made = first.stat().st_mtime_ns

    # A re-roll of the second transition with its own seed: a third take, chosen, the first untouched.
    r = c.post(f"/api/jobs/{job_id}/transitions/1/takes", json={"seed": 123})
    assert r.status_code == 202, r.text
    job = wait_for(c, job_id, timeout=300)
    assert job["status"] == "completed", why_not_done(job, wan_server)
    assert first.stat().st_mtime_ns == made
    new = job["transitions"][1]["takes"][-1]
    assert (new["take"], new["seed"], new["status"], new["chosen"], new["frames"]) == (3, 123, "done", True, 9)
    assert isinstance(new["overall"], (int, float))
    final = probe(folder / "final.mp4")
    assert round(final.fps) == 16 and final.frames == 2 * 9 - 1


def test_a_cancel_lands_within_a_step(wan_server, c):
    ids = upload_scenes(c, 2, size=(96, 80), shift=8, hue=50, salt=3)
    # quality 100: the full path, 40 steps with guidance; cancelled as soon as a step is reported.
    job_id = submit(c, ids, seconds=SECONDS, quality=100, seed=5)
    running = wait_for(c, job_id, until=lambda j: ((j.get("current") or {}).get("step") or 0) >= 1, timeout=120)
    asked_at = running["current"]["step"]
    r = c.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    job = wait_for(c, job_id, timeout=30)
    assert job["status"] == "cancelled", job
    assert job["params"]["steps"] == wan_spec.FULL_STEPS and job["video_url"] is None
    last = (job.get("current") or {}).get("step") or asked_at
    # The sampler stops at its next step report; a step or two may have ended while the request flew.
    assert last <= asked_at + 3 < wan_spec.FULL_STEPS, (asked_at, last)
    assert not (wan_server.data_dir / "outputs" / job_id / "final.mp4").exists()


@pytest.mark.parametrize(("model", "group"), [("wan2.1-flf2v", "wan"), ("wan2.2-i2v-a14b", "wan22")])
def test_wan_not_installed_is_refused_with_the_install_command(tmp_path, model, group):
    with (
        StudioServer(tmp_path, {"STUDIO_WAN_MODEL": model}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as client,
    ):
        wan = client.get("/api/health").json()["engines"]["wan"]
        assert wan["installed"] is False and wan["fix"].endswith(f"--only {group}") and wan["model"] == model
        ids = upload_scenes(client, 2)
        r = client.post("/api/jobs", json={"images": ids, "engine": "wan", "settings": {"seconds": 1.0}})
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["code"] == "engine_not_ready" and body["engine"] == "wan"
        assert body["fix"].endswith(f"--only {group}") and body["fix"] in body["detail"]
        assert client.get("/api/jobs").json()["jobs"] == []  # nothing was queued
