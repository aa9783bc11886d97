"""A crash mid-job loses nothing: kill -9 the server, start it again, the job finishes, for the
FramePack engine and for the Wan engine (the tiny Wan installed as `--only wan` lays it out)."""

from __future__ import annotations

import time

import httpx
import pytest

from backend.utils.video_io import probe
from tests.helpers.images import scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload

# Per engine: the frames of one 2.4 s transition (FramePack: 73 at 30 fps; Wan: 4k+1 = 37 at 16 fps).
FRAMES = {"framepack": 73, "wan": 37}
# Wan in its fast mode (4 steps, one forward each, the LightX2V LoRA `--only wan` installs): the
# full mode's 23 steps with CFG made this test three times longer, for the same resume path.
QUALITY = {"framepack": 40, "wan": 10}


def install(engine: str, tmp_path, request) -> dict[str, str]:
    """The engine's weights where the studio looks for them; returns the server's environment."""
    if engine == "framepack":
        return {"FRAMEPACK_DIR": str(request.getfixturevalue("tiny_framepack_dir"))}
    from backend.utils.model_registry import WAN_FOLDER, WAN_LORA_FILE, WAN_LORA_FOLDER
    from tests.helpers.tiny_wan import lightx2v_style_lora, save_tiny_pipeline

    save_tiny_pipeline(tmp_path / "models" / WAN_FOLDER)
    lightx2v_style_lora(tmp_path / "models" / WAN_LORA_FOLDER / WAN_LORA_FILE)
    return {}


@pytest.mark.parametrize("engine", ["framepack", "wan"])
def test_kill_9_mid_job_then_restart_resumes_from_finished_segments(tmp_path, request, engine):
    env = install(engine, tmp_path, request)
    first = StudioServer(tmp_path, env).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            ids = upload(client, [scene(64, 64, shift=10 * i, hue=30 * i) for i in range(4)])
            job_id = client.post(
                "/api/jobs",
                json={
                    "images": ids,
                    "engine": engine,
                    "prompt": "a cat walks",
                    "settings": {"seconds": 2.4, "quality": QUALITY[engine], "resolution": 64, "seed": 3},
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
        assert info.frames == 3 * FRAMES[engine] - 2
        # Its inputs are all still there.
        for upload_id in ids:
            assert client.get(f"/files/uploads/{upload_id}.png").status_code == 200
