"""Jobs with post-processing through the real server: weights of the real architectures (random),
placed where the settings say, loaded through the registry; a missing weight fails the job clearly
and nothing is lost: retry reuses the finished segments."""

from __future__ import annotations

import httpx

from backend.utils.video_io import probe
from tests.helpers.images import scene
from tests.helpers.jobs import wait_for
from tests.helpers.postprocess import make_settings, save_rife, save_upscaler, weights_env
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload


def test_post_processed_job_and_a_failed_stage_then_retry(tmp_path):
    models = make_settings(tmp_path)
    env = {**weights_env(models), "STUDIO_DEFAULT_ENGINE": "morph"}
    save_rife(models)
    save_upscaler(models, "realesr-animevideov3")
    with StudioServer(tmp_path, env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        ids = upload(client, [scene(64, 64), scene(64, 64, shift=10), scene(64, 64, shift=20)])
        settings = {"seconds": 1.2, "resolution": 64}
        r = client.post(
            "/api/jobs",
            json={
                "images": ids,
                "settings": settings,
                "postprocess": {
                    "mode": "manual",
                    "upscale": 2,
                    "upscale_model": "realesr-animevideov3",
                    "interpolate": 2,
                },
            },
        )
        job = wait_for(client, r.json()["id"])
        assert job["status"] == "completed", job["error"]
        joined_frames = 2 * 37 - 1
        info = probe(server.data_dir / "outputs" / job["id"] / "final.mp4")
        assert (info.width, info.height, info.fps, info.frames) == (128, 128, 60.0, 2 * joined_frames - 1)
        assert job["postprocess_report"] is not None

        # Face restore asked for, but CodeFormer's weights are nowhere (and cannot be downloaded).
        r = client.post(
            "/api/jobs",
            json={"images": ids, "settings": settings, "postprocess": {"mode": "manual", "face_restore": True}},
        )
        failed = wait_for(client, r.json()["id"])
        assert failed["status"] == "failed"
        # The first weight the stage needs is the face detector's: named, with where to put it.
        # Named by the setting that holds the folder; the path itself is only in the server log.
        assert "detection_Resnet50_Final.pth" in failed["error"] and "FACEXLIB_DIR/" in failed["error"]
        assert str(models.facexlib_dir) not in failed["error"]
        assert [s["status"] for s in failed["segments"]] == ["done", "done"]
        segment = server.data_dir / "outputs" / failed["id"] / "segment_000.mp4"
        made_at = segment.stat().st_mtime_ns

        # Retry is refused for a completed job, accepted for the failed one; segments are reused.
        assert client.post(f"/api/jobs/{job['id']}/retry").status_code == 409
        r = client.post(f"/api/jobs/{failed['id']}/retry")
        assert r.status_code == 200 and r.json()["status"] in ("queued", "running", "failed")
        again = wait_for(client, failed["id"], until=lambda j: j["status"] == "failed" and j["attempts"] == 2)
        assert "detection_Resnet50_Final.pth" in again["error"]
        assert segment.stat().st_mtime_ns == made_at


def test_auto_mode_without_weights_still_makes_the_video(tmp_path):
    """A new user's default (auto post-processing) on a machine without the weights and without
    the network: the stages auto proposed are dropped with a warning, and the video is made."""
    env = {"STUDIO_WEIGHTS_MIRROR": "http://127.0.0.1:9", "STUDIO_UPSCALE_TARGET_EDGE": "1080"}
    with StudioServer(tmp_path, env) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        ids = upload(c, [scene(96, 64), scene(96, 64, shift=12)])
        job = c.post(
            "/api/jobs",
            json={
                "images": ids,
                "engine": "morph",
                "settings": {"seconds": 1, "resolution": 128},
                "postprocess": {"mode": "auto"},
            },
        ).json()
        done = wait_for(c, job["id"], timeout=240)
        assert done["status"] == "completed", done
        report = done["postprocess_report"]
        assert "upscale" not in report["stages"] and "interpolate" not in report["stages"]
        assert any(r.startswith("Upscale skipped") for r in report["reasons"]), report["reasons"]
        assert any("Upscale skipped" in w and "업스케일 건너뜀" in w for w in done["warnings"]), done["warnings"]
        assert any("Interpolation skipped" in w for w in done["warnings"]), done["warnings"]
        assert c.get(done["video_url"]).status_code == 200
