"""Facts that cross module boundaries are written once: where an upload lives and is served, which
upscale models exist, and the frame rate of every file a job writes."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from backend.utils.config import Settings
from tests.helpers.server import ROOT
from tests.helpers.uploads import upload_scenes


def backend_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in (ROOT / "backend").rglob("*.py")}


def files_holding(text: str) -> list[str]:
    return sorted(name for name, source in backend_sources().items() if text in source)


@pytest.fixture()
def client(tmp_path):
    from backend.app import create_app

    settings = Settings(
        data_dir=tmp_path / "data",
        models_dir=tmp_path / "models",
        device="cpu",
        translate_service_url="127.0.0.1:9",
        _env_file=None,
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


def _upload(client, n: int = 2) -> list[str]:
    return upload_scenes(client, n, name="{i}", fmt="JPEG")


def _finished(client, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while (job := client.get(f"/api/jobs/{job_id}").json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


# --- uploads --------------------------------------------------------------------------------------
def test_an_upload_is_served_where_its_views_link_and_stored_where_jobs_read(client):
    from backend.utils.files import upload_path, upload_url

    settings = client.app.state.settings
    upload_id = _upload(client, 1)[0]
    view = client.get(f"/api/uploads/{upload_id}").json()
    assert view["url"] == upload_url(upload_id)
    served = client.get(view["url"])
    assert served.status_code == 200 and served.content == upload_path(settings, upload_id).read_bytes()


def test_the_upload_name_and_url_are_built_in_one_module():
    home = ["backend/utils/files.py"]
    assert files_holding('"/files') == home  # the URL prefixes, the served folders' mounts included
    assert files_holding("uploads_dir / ") == home
    # No module spells the stored name itself; the exports name the frames they write (a zip's PNGs,
    # the file a browser downloads), which are no stored uploads.
    assert files_holding('}.png"') == ["backend/jobs/export_service.py", "backend/pipeline/export_encoding.py"]


# --- upscale models -------------------------------------------------------------------------------
def test_the_upscale_models_are_listed_once_and_the_api_offers_exactly_them(client):
    from backend.pipeline.postprocess import PostPlan
    from backend.utils.model_registry import DEFAULT_UPSCALE_MODEL, UPSCALE_MODELS, WEIGHTS

    assert UPSCALE_MODELS == ("realesrgan-x4plus", "realesrgan-x2plus", "realesr-animevideov3")
    assert all(WEIGHTS[name].dir_setting == "upscaler_dir" for name in UPSCALE_MODELS)
    schema = client.get("/openapi.json").json()["components"]["schemas"]["PostprocessOptions"]
    assert tuple(schema["properties"]["upscale_model"]["enum"]) == UPSCALE_MODELS
    assert schema["properties"]["upscale_model"]["default"] == DEFAULT_UPSCALE_MODEL == PostPlan("auto").upscale_model
    # The names themselves appear in the registry only (the default and the tuple derive from it).
    for name in UPSCALE_MODELS:
        assert files_holding(f'"{name}"') == ["backend/utils/model_registry.py"], name


def test_an_unknown_upscale_model_is_refused_by_the_api_and_the_planner(client):
    from backend.pipeline.postprocess import plan_postprocess
    from backend.utils.video_io import VideoInfo

    ids = _upload(client)
    answer = client.post(
        "/api/jobs",
        json={"images": ids, "engine": "morph", "postprocess": {"mode": "manual", "upscale": 2, "upscale_model": "x9"}},
    )
    assert answer.status_code == 422 and "realesr-animevideov3" in answer.text
    with pytest.raises(ValueError, match="realesrgan-x2plus"):
        plan_postprocess(
            {"mode": "manual", "upscale_model": "x9"}, VideoInfo(64, 64, 30.0, 10, {}), None, client.app.state.settings
        )


# --- frame rate -----------------------------------------------------------------------------------
@pytest.fixture()
def old_fps_setting(monkeypatch):
    # What made previews differ from segments before: the retired setting, still set.
    monkeypatch.setenv("STUDIO_OUTPUT_FPS", "24")


def test_previews_segments_and_the_final_video_share_the_one_frame_rate(old_fps_setting, client):
    from backend.jobs.params import FPS
    from backend.jobs.runner import JobRunner
    from backend.utils.video_io import probe

    ids = _upload(client)
    answer = client.post(
        "/api/jobs",
        json={"images": ids, "engine": "morph", "prompt": "a turn", "settings": {"seconds": 0.5, "resolution": 64}},
    )
    assert answer.status_code == 201, answer.text
    job = _finished(client, answer.json()["id"])
    assert job["status"] == "completed", job
    assert job["params"]["fps"] == FPS
    data = client.app.state.settings.data_dir
    final = data / job["video_url"].removeprefix("/files/")
    segment = data / job["segments"][0]["video_url"].removeprefix("/files/")
    # A section preview, written the way the FramePack engine's section callback writes it.
    runner = JobRunner(client.app.state.settings, client.app.state.store, client.app.state.engines, lambda e: None)
    runner.write_preview(job["id"], 0, 1, np.zeros((9, 64, 64, 3), np.uint8))
    preview = data / client.get(f"/api/jobs/{job['id']}").json()["preview_url"].removeprefix("/files/")
    assert preview.name == "preview_000_01.mp4"
    assert [probe(p).fps for p in (preview, segment, final)] == [FPS, FPS, FPS]


def test_an_old_env_file_with_the_retired_fps_setting_still_starts_and_warns_once(tmp_path, caplog, monkeypatch):
    from backend.utils import config

    monkeypatch.setattr(config, "_warned_retired", set())
    env = tmp_path / ".env"
    env.write_text("STUDIO_OUTPUT_FPS=24\nSTUDIO_PORT=8123\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="backend.utils.config"):
        first = Settings(_env_file=env)
        Settings(_env_file=env)
    assert first.port == 8123 and not hasattr(first, "output_fps")
    warnings = [r.getMessage() for r in caplog.records if "STUDIO_OUTPUT_FPS" in r.getMessage()]
    assert len(warnings) == 1 and "30 fps" in warnings[0] and "interpolation" in warnings[0]


def test_the_retired_fps_setting_in_the_environment_warns_too(caplog, monkeypatch):
    from backend.utils import config

    monkeypatch.setattr(config, "_warned_retired", set())
    monkeypatch.setenv("STUDIO_OUTPUT_FPS", "60")
    with caplog.at_level(logging.WARNING, logger="backend.utils.config"):
        Settings(_env_file=None)
    assert any("STUDIO_OUTPUT_FPS" in r.getMessage() for r in caplog.records)


def test_a_clean_start_says_nothing_about_retired_settings(caplog, monkeypatch):
    from backend.utils import config

    monkeypatch.setattr(config, "_warned_retired", set())
    monkeypatch.delenv("STUDIO_OUTPUT_FPS", raising=False)
    with caplog.at_level(logging.WARNING, logger="backend.utils.config"):
        Settings(_env_file=None)
    assert not [r for r in caplog.records if "no longer a setting" in r.getMessage()]
