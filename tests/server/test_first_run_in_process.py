"""A new user's first run, in-process (Starlette's TestClient runs the real lifespan: real SQLite,
real morph engine, real files): nothing waits on a model, FramePack is reported truthfully and
refused while missing, one engine's trouble never holds up another's jobs, and errors read as
sentences.

The image-analysis model is the tiny real OpenCLIP of the analyzer tests; a slow or failing
model is its loader made slow or failing, the boundary where a download or a missing file
surfaces.
"""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.jobs.analyzers import image_analyzer as ia
from backend.jobs.analyzers.service import AnalysisService
from backend.utils.config import Settings
from tests.helpers.jobs import wait_for
from tests.helpers.openclip import tiny_clip_dir
from tests.helpers.server import ROOT
from tests.helpers.translators import DictTranslator
from tests.helpers.uploads import upload_scenes


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip_dir(tmp_path_factory.mktemp("clip"))


def _settings(tmp_path: Path, **overrides) -> Settings:
    values = dict(
        data_dir=tmp_path / "data", models_dir=tmp_path / "models", device="cpu", translate_service_url="127.0.0.1:9"
    )
    values.update(overrides)
    return Settings(**values)


def _client(settings: Settings, analysis: AnalysisService | None = None) -> TestClient:
    return TestClient(create_app(settings, analysis=analysis), base_url="http://127.0.0.1:8000")


def _upload(client, n=3):
    return upload_scenes(client, n, hue=60)


_wait = partial(wait_for, timeout=60.0)  # until the job is finished


AUTO = {"resolution": 64, "seed": 1}  # length and strength left to the analysis
MORPH = {"engine": "morph", "settings": AUTO, "postprocess": {"mode": "off"}}


# --- no request waits on a model ------------------------------------------------------------------
def _timed_submit(client, ids, body=MORPH):
    started = time.monotonic()
    r = client.post("/api/jobs", json={"images": ids, **body})
    return r, time.monotonic() - started


def test_submit_and_analyze_answer_at_once_while_the_model_loads(tmp_path, clip_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    release = threading.Event()

    def slow_loader(settings):  # a first start that is still downloading OpenCLIP
        release.wait(60)
        return ia.load_openclip(settings)

    settings = _settings(tmp_path, openclip_model=f"local-dir:{clip_dir}")
    service = AnalysisService(settings, translator=DictTranslator(), clip_loader=slow_loader)
    try:
        with _client(settings, service) as client:
            ids = _upload(client)
            started = time.monotonic()
            analysis = client.post("/api/analyze", json={"images": ids})
            assert time.monotonic() - started < 1.0
            assert analysis.json()["state"] == "loading" and "loading" in analysis.json()["reason"]
            r, took = _timed_submit(client, ids)
            assert r.status_code == 201 and took < 1.0, (r.text, took)
            job = _wait(client, r.json()["id"])
            assert job["status"] == "completed"
            # The job says it used the defaults because the analysis was not ready.
            assert any("Image analysis was not ready" in w and "이미지 분석" in w for w in job["warnings"])
            assert [s["sections"] for s in job["params"]["segments"]] == [2, 2]  # the 2.4 s default

            release.set()  # the model arrives; the page's next ask gets the analysis
            deadline = time.monotonic() + 60
            while client.post("/api/analyze", json={"images": ids}).json()["state"] != "ready":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            r, took = _timed_submit(client, ids)
            assert r.status_code == 201 and took < 1.0
            job = client.get(f"/api/jobs/{r.json()['id']}").json()
            assert not any("Image analysis" in w for w in job["warnings"])
            truth = client.post("/api/analyze", json={"images": ids}).json()["suggestions"]["pairs"]
            assert [s["strength"] for s in job["params"]["segments"]] == [p["strength"] for p in truth]
    finally:
        release.set()


def test_submit_answers_at_once_when_analysis_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = []

    def broken_loader(settings):
        calls.append(1)
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    settings = _settings(tmp_path)
    service = AnalysisService(settings, translator=DictTranslator(), clip_loader=broken_loader)
    with _client(settings, service) as client:
        ids = _upload(client)
        times = []
        for _ in range(3):
            r, took = _timed_submit(client, ids)
            assert r.status_code == 201, r.text
            times.append(took)
        assert max(times) < 1.0, times
        deadline = time.monotonic() + 10
        while (answer := client.post("/api/analyze", json={"images": ids}).json())["state"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert answer["state"] == "unavailable" and answer["available"] is False
        # A sentence for people; the exception for the bug report.
        assert "couldn't connect" not in answer["reason"] and "OpenCLIP" in answer["reason"]
        assert "couldn't connect" in answer["details"]
        assert len(calls) == 1  # remembered, not retried per request
        for job in client.get("/api/jobs").json()["jobs"]:
            assert _wait(client, job["id"])["status"] == "completed"


# --- FramePack missing: truthful health, refusal, morph by default -------------------------------
def test_health_and_submit_with_framepack_missing(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    settings = _settings(tmp_path)  # the defaults: three hub ids, nothing downloaded
    with _client(settings) as client:
        health = client.get("/api/health").json()
        fp = health["engines"]["framepack"]
        assert fp["ready"] is False and fp["installed"] is False
        assert "lllyasviel/FramePackI2V_HY" in fp["missing"]
        # The open health route names the folder by its setting; the refusal below (token-checked
        # like every job route) gives the command with the real folder.
        assert fp["fix"] == "bash scripts/setup.sh --base-dir STUDIO_MODELS_DIR --only framepack"
        assert fp["fix"] in fp["reason"] and "설치되지 않았습니다" in fp["reason_ko"]
        assert health["engines"]["morph"]["ready"] is True
        assert health["defaults"]["engine"] == "morph" and health["defaults"]["configured_engine"] == "framepack"

        ids = _upload(client, 2)
        started = time.monotonic()
        r = client.post("/api/jobs", json={"images": ids, "engine": "framepack", "settings": AUTO})
        assert time.monotonic() - started < 1.0
        assert r.status_code == 409
        body = r.json()
        assert body["code"] == "engine_not_ready" and body["engine"] == "framepack"
        assert "FramePack is not installed" in body["detail"] and "FramePack이 설치되지 않았습니다" in body["detail"]
        assert body["fix"] in body["detail"] and "lllyasviel/FramePackI2V_HY" in body["missing"]
        assert body["fix"] == f"bash scripts/setup.sh --base-dir {settings.models_dir} --only framepack"
        assert client.get("/api/jobs").json()["jobs"] == []  # nothing was queued

        # No engine named: the morph engine makes the video, and the job says why.
        r = client.post("/api/jobs", json={"images": ids, "settings": AUTO, "postprocess": {"mode": "off"}})
        assert r.status_code == 201
        job = _wait(client, r.json()["id"])
        assert job["engine"] == "morph" and job["status"] == "completed"
        assert any("framepack engine is not installed" in w for w in job["warnings"])


def test_framepack_counts_as_installed_only_with_its_weights(tmp_path, tiny_framepack_dir, monkeypatch):
    import shutil

    import huggingface_hub.constants

    from backend.utils.model_registry import framepack_install_problem

    assert framepack_install_problem(_settings(tmp_path, framepack_dir=str(tiny_framepack_dir))) is None
    # A folder whose download stopped half-way: model_index.json there, transformer weights not.
    broken = tmp_path / "half"
    shutil.copytree(tiny_framepack_dir, broken, symlinks=True)
    for weight in (broken / "transformer").glob("*.safetensors"):
        weight.unlink()
    problem = framepack_install_problem(_settings(tmp_path, framepack_dir=str(broken)))
    assert problem is not None and "transformer" in problem.en and "setup.sh" in problem.fix
    # Hub ids count once the Hugging Face cache holds them (config and weights), never by asking the hub.
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    s = _settings(tmp_path)
    layout = {
        s.framepack_transformer: ["config.json", "w.safetensors"],
        s.framepack_base: ["model_index.json", "vae.safetensors"],
        s.framepack_image_encoder: ["image_encoder/config.json", "image_encoder/m.safetensors"],
    }
    for repo, files in layout.items():
        root = cache / f"models--{repo.replace('/', '--')}"
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text("abc")
        missing = framepack_install_problem(s)
        assert missing is not None and repo in missing.missing
        for name in files:
            (root / "snapshots" / "abc" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "snapshots" / "abc" / name).write_text("{}")
    assert framepack_install_problem(s) is None


# --- one engine's trouble never blocks another's jobs ---------------------------------------------
def test_a_morph_job_does_not_wait_behind_a_framepack_job_stuck_loading(tmp_path, tiny_framepack_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = _settings(tmp_path, framepack_dir=str(tiny_framepack_dir))
    with _client(settings) as client:
        framepack = client.app.state.engines.get("framepack")
        stuck = threading.Event()
        entered = threading.Event()
        real_load = framepack.load

        def load(progress=None):  # the hub client retrying, or a 24 GB read from a slow disk
            entered.set()
            stuck.wait(60)
            return real_load(progress)

        framepack.load = load
        ids = _upload(client, 2)
        slow = client.post(
            "/api/jobs",
            json={
                "images": ids,
                "engine": "framepack",
                "prompt": "a slow pan",
                "settings": {"resolution": 64, "seconds": 1, "seed": 1, "quality": 0},
                "postprocess": {"mode": "off"},
            },
        ).json()["id"]
        assert entered.wait(30)
        quick = client.post("/api/jobs", json={"images": ids, **MORPH}).json()["id"]
        try:
            assert _wait(client, quick, timeout=30)["status"] == "completed"
            assert client.get(f"/api/jobs/{slow}").json()["status"] == "running"
            worker = client.get("/api/health").json()["worker"]
            assert worker["lanes"]["framepack"]["running"] == slow
            assert worker["lanes"]["morph"]["state"] == "idle"
        finally:
            stuck.set()
        assert _wait(client, slow, timeout=240)["status"] == "completed"


# --- messages a person understands ----------------------------------------------------------------
def test_an_internal_error_reads_as_a_sentence_with_the_details_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with _client(_settings(tmp_path)) as client:
        morph = client.app.state.engines.get("morph")

        def broken(*args, **kwargs):
            raise KeyError("module.block0.conv0.0.0.weight")

        morph.generate = broken
        ids = _upload(client, 2)
        job = _wait(client, client.post("/api/jobs", json={"images": ids, **MORPH}).json()["id"])
        assert job["status"] == "failed"
        assert "internal error" in job["error"] and "내부 오류" in job["error"]
        assert "KeyError" not in job["error"] and "module.block0" not in job["error"]
        assert job["details"] == "KeyError: 'module.block0.conv0.0.0.weight'"


# --- the seed's uvicorn command and the token --------------------------------------------------------
def test_a_studio_without_a_token_refuses_connections_from_other_machines(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = create_app(_settings(tmp_path))
    # The ASGI server puts the socket's own address in scope["server"]: a LAN address here.
    with TestClient(app, base_url="http://192.168.77.5:8000") as lan:
        r = lan.get("/api/jobs")
        assert r.status_code == 403 and "STUDIO_TOKEN" in r.json()["detail"] and "토큰" in r.json()["detail"]
    with TestClient(app, base_url="http://127.0.0.1:8000") as local:
        assert local.get("/api/jobs").status_code == 200
    opted_out = create_app(_settings(tmp_path / "b", allow_open_lan=True))
    with TestClient(opted_out, base_url="http://192.168.77.5:8000") as lan:
        assert lan.get("/api/health").status_code != 403


def test_importing_backend_app_builds_nothing(tmp_path):
    import subprocess
    import sys

    code = (
        "import backend.app as m, json, os; "
        "print(json.dumps({'built': m.app._app is not None, 'data': os.path.exists('static-probe')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**__import__("os").environ, "STUDIO_DATA_DIR": str(tmp_path / "never")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"built": False, "data": False}
    assert not (tmp_path / "never").exists()


def test_a_framepack_job_resumed_without_the_weights_fails_with_the_install_message(tmp_path, monkeypatch):
    """A job queued before the weights went missing (picked up again at start-up) ends with the
    sentence that names the model and the fix, not with a loader's error."""
    import huggingface_hub.constants

    from backend.contracts.models import JobSettings

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with _client(_settings(tmp_path)) as client:
        ids = _upload(client, 2)
        queue = client.app.state.queue
        params = queue.resolve_params(ids, JobSettings(resolution=64, seconds=1, seed=1), "framepack")
        client.app.state.store.create_job(
            "resumed0000000001",
            "framepack",
            {"images": ids, "engine": "framepack"},
            params,
            [{"original": "", "english": "a pan"}],
            len(params["segments"]),
        )
        queue.lanes.put("framepack", "resumed0000000001")
        job = _wait(client, "resumed0000000001")
        assert job["status"] == "failed"
        assert "FramePack is not installed" in job["error"] and "FramePack이 설치되지 않았습니다" in job["error"]
        assert "setup.sh" in job["error"] and "EngineNotReady" in job["details"]


def test_the_fix_command_names_the_checkout_models_folder_relatively():
    from backend.utils.config import Settings
    from backend.utils.model_registry import framepack_fix_command
    from tests.helpers.server import ROOT

    inside = Settings(_env_file=None, models_dir=ROOT / "models")
    assert framepack_fix_command(inside) == "bash scripts/setup.sh --base-dir ./models --only framepack"
    outside = Settings(_env_file=None, models_dir="/srv/studio-models")
    assert framepack_fix_command(outside) == "bash scripts/setup.sh --base-dir /srv/studio-models --only framepack"
