"""AnalysisService and POST /api/analyze: tiny real OpenCLIP, real SQLite, a real uvicorn server
on loopback and real multipart uploads."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from backend.jobs.analyzers import image_analyzer as ia
from backend.jobs.analyzers.service import AnalysisService
from tests.helpers.openclip import clip_settings, pattern_image, tiny_clip_dir
from tests.helpers.server import ROOT
from tests.helpers.translators import DictTranslator


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip_dir(tmp_path_factory.mktemp("clip"))


async def _settled(service, paths, timeout=60.0):
    """analyze() answers at once; this asks again until the model has loaded (or failed)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await service.analyze(paths)
        if result["state"] != "loading" or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


def _images(folder: Path, kinds, size=(96, 64)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, kind in enumerate(kinds):
        # A kind is a pattern name, or (pattern name, (width, height)).
        name, wh = kind if isinstance(kind, tuple) else (kind, size)
        p = folder / f"img{i}.png"
        pattern_image(name, wh).save(p)
        paths.append(p)
    return paths


async def test_analyze_with_tiny_model(tmp_path, clip_dir):
    service = AnalysisService(clip_settings(tmp_path, clip_dir), translator=DictTranslator())
    try:
        paths = _images(tmp_path / "in", ["gradient", "gradient", "checker"])
        result = await _settled(service, paths)
    finally:
        await service.aclose()
    assert result["available"] is True and result["reason"] is None and result["state"] == "ready"
    assert result["model"].startswith("local-dir:")
    assert [im["id"] for im in result["images"]] == ["img0", "img1", "img2"]
    for im in result["images"]:
        assert set(im["tags"]) == {"person", "face", "scene", "style"}
        assert im["width"] == 96 and im["height"] == 64
    assert result["pairs"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert result["pairs"][1]["similarity"] < 1.0
    s = result["suggestions"]
    # Identical images: the shortest transition and the gentlest strength.
    assert s["pairs"][0] == {"seconds": ia.SECONDS_RANGE[0], "strength": ia.STRENGTH_RANGE[0]}
    assert len(s["pairs"]) == 2
    # 96x64 images are tiny: the smallest resolution step, at their 3:2 aspect.
    assert s["resolution"] == 320 and s["bucket"] == [384, 256]
    assert s["fit"] in ("crop", "pad")
    assert any(r["field"] == "seconds" and r["pair"] == 0 for r in s["reasons"])
    assert all(r["en"] and r["ko"] for r in s["reasons"])
    assert len(result["default_prompts"]) == 2


async def test_suggested_bucket_follows_aspect_and_resolution(tmp_path, clip_dir):
    service = AnalysisService(clip_settings(tmp_path, clip_dir), translator=DictTranslator())
    try:
        big = _images(tmp_path / "big", [("gradient", (1280, 720)), ("checker", (1920, 1080))])
        result = await _settled(service, big)
        tall = _images(tmp_path / "tall", [("gradient", (720, 1280)), ("red", (2000, 300))])
        mixed = await _settled(service, tall)
    finally:
        await service.aclose()
    s = result["suggestions"]
    assert s["resolution"] == 640
    w, h = s["bucket"]
    assert w % 16 == 0 and h % 16 == 0 and abs(w / h - 16 / 9) < 0.05
    assert s["fit"] == "crop"  # same aspect: nothing to lose
    # A portrait then a panorama: cropping would cut most of one away, so pad is suggested.
    assert mixed["suggestions"]["fit"] == "pad"
    assert any(r["field"] == "fit" and r["image"] is not None for r in mixed["suggestions"]["reasons"])
    assert any(r["field"] == "fit" and r["pair"] == 0 for r in mixed["suggestions"]["reasons"])


async def test_unloadable_model_reports_unavailable_and_is_not_retried_at_once(tmp_path):
    calls = []

    def broken_loader(settings):
        calls.append(1)
        raise RuntimeError("no weights here")

    service = AnalysisService(clip_settings(tmp_path, None), translator=DictTranslator(), clip_loader=broken_loader)
    try:
        paths = _images(tmp_path / "in", ["gradient", "checker"])
        first = await _settled(service, paths)
        second = await service.analyze(paths)
    finally:
        await service.aclose()
    for result in (first, second):
        assert result["available"] is False
        # The person reads a sentence in both languages; the exception's text is in `details`.
        assert result["state"] == "unavailable"
        assert "OpenCLIP" in result["reason"] and "이미지 분석" in result["reason"]
        assert "no weights here" not in result["reason"] and "RuntimeError" not in result["reason"]
        assert result["details"] == "RuntimeError: no weights here"
        assert result["pairs"] == [{"index": 0, "similarity": None, "difference": None}]
        assert result["suggestions"]["pairs"] == [{"seconds": None, "strength": None}]
        assert result["suggestions"]["bucket"]  # size-based suggestions need no model
        assert result["images"][0]["tags"] is None
    assert len(calls) == 1


async def test_real_loader_without_network_or_weights_is_unavailable_fast(tmp_path):
    settings = clip_settings(tmp_path, None, openclip_pretrained=str(tmp_path / "missing.pt"))
    service = AnalysisService(settings, translator=DictTranslator())
    try:
        started = time.monotonic()
        result = await _settled(service, _images(tmp_path / "in", ["gradient", "checker"]))
    finally:
        await service.aclose()
    assert result["available"] is False and time.monotonic() - started < 10
    assert result["state"] == "unavailable" and result["details"]


async def test_slow_model_load_never_hangs_a_request(tmp_path, clip_dir):
    release = threading.Event()

    def slow_loader(settings):
        release.wait(10)
        return ia.load_openclip(settings)

    settings = clip_settings(tmp_path, clip_dir, analysis_load_timeout_s=0.3)
    service = AnalysisService(settings, translator=DictTranslator(), clip_loader=slow_loader)
    try:
        paths = _images(tmp_path / "in", ["gradient", "checker"])
        started = time.monotonic()
        result = await service.analyze(paths)
        assert time.monotonic() - started < 2.0
        assert result["available"] is False and "loading" in result["reason"]
        assert result["state"] == "loading"
        release.set()  # the load carried on in the background; a later request gets it
        result = await _settled(service, paths)
        assert result["available"] is True
    finally:
        release.set()
        await service.aclose()


async def test_english_prompts_translate_and_fill_blanks_from_analysis(tmp_path, clip_dir):
    translator = DictTranslator()
    service = AnalysisService(clip_settings(tmp_path, clip_dir), translator=translator)
    try:
        paths = _images(tmp_path / "in", ["gradient", "checker", "red", "noise"])
        results = await service.english_prompts(["고양이", None, "  "], paths)
        again = await service.english_prompts(["고양이"], paths[:2])
    finally:
        await service.aclose()
    assert [r.source for r in results] == ["user", "default", "default"]
    assert results[0].english == "cat" and results[0].original == "고양이"
    assert results[0].warnings == []
    analysis_prompts = [r.english for r in results[1:]]
    assert all(p and p.strip() for p in analysis_prompts)
    assert again[0].engines == ["cache:google"] and translator.calls == ["고양이"]
    assert results[1].to_dict()["english"] == results[1].english


async def test_english_prompts_never_raise_and_carry_warnings(tmp_path):
    def broken_loader(settings):
        raise RuntimeError("offline")

    service = AnalysisService(
        clip_settings(tmp_path, None, translate_retries=0),
        translator=DictTranslator(fail=True),
        clip_loader=broken_loader,
    )
    try:
        paths = _images(tmp_path / "in", ["gradient", "checker", "red"])
        results = await service.english_prompts(["바다 위로 해가 진다", ""], paths)
    finally:
        await service.aclose()
    assert results[0].english == "바다 위로 해가 진다"
    assert results[0].warnings and results[0].warnings[0].startswith("Pair 1 / 구간 1:")
    from backend.jobs.analyzers.prompt_analyzer import GENERIC_MOTION_PROMPT

    assert results[1].english == GENERIC_MOTION_PROMPT and results[1].source == "default"


def test_suggestion_rules_are_monotonic_and_capped():
    sims = [0.99, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3]
    pairs = [ia.suggest_pair(s, max_seconds=20) for s in sims]
    seconds = [p["seconds"] for p in pairs]
    strength = [p["strength"] for p in pairs]
    assert seconds == sorted(seconds) and strength == sorted(strength)
    assert seconds[0] == 2.0 and seconds[-1] == 4.0
    assert ia.suggest_pair(0.1, max_seconds=3.0)["seconds"] == 3.0
    assert ia.suggest_resolution([(4000, 3000), (300, 300)]) == 320
    assert ia.suggest_resolution([(500, 500)]) == 448
    assert ia.suggest_fit([0.01, 0.02], "pad") == ("crop", "crop_same_aspect")
    assert ia.suggest_fit([0.2], "pad") == ("pad", None)
    assert ia.suggest_fit([0.6], "crop") == ("pad", "pad_large_loss")


def test_route_module_does_not_import_torch():
    code = (
        "import sys; import backend.web.routes.analysis, backend.jobs.analyzers.service; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# --- the HTTP route on a real server ---------------------------------------------------------------
@pytest.fixture
def server(tmp_path, clip_dir):
    from backend.app import create_app

    settings = clip_settings(tmp_path, clip_dir)
    service = AnalysisService(settings, translator=DictTranslator())
    app = create_app(settings, analysis=service)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "server did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def _png(kind: str, size=(120, 80)) -> bytes:
    buf = io.BytesIO()
    pattern_image(kind, size).save(buf, format="PNG")
    return buf.getvalue()


async def test_post_analyze_over_http(server):
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        up = await client.post(
            "/api/uploads",
            files=[
                ("files", ("a.png", _png("gradient"), "image/png")),
                ("files", ("b.png", _png("checker"), "image/png")),
            ],
        )
        assert up.status_code == 201, up.text
        ids = [u["id"] for u in up.json()["uploads"]]
        started = time.monotonic()
        r = await client.post("/api/analyze", json={"images": ids})
        # The first answer comes at once, while the model loads in the background.
        assert r.status_code == 200 and time.monotonic() - started < 1.0, r.text
        assert r.json()["state"] == "loading" and r.json()["available"] is False
        for _ in range(600):
            r = await client.post("/api/analyze", json={"images": ids})
            if r.json()["state"] != "loading":
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["available"] is True
        assert [im["id"] for im in body["images"]] == ids
        assert len(body["suggestions"]["pairs"]) == 1
        assert set(body["suggestions"]) == {"pairs", "resolution", "bucket", "fit", "reasons"}

        missing = await client.post("/api/analyze", json={"images": [ids[0], "0123456789abcdef"]})
        assert missing.status_code == 404 and "0123456789abcdef" in missing.json()["detail"]
        bad = await client.post("/api/analyze", json={"images": ["../../etc/passwd"]})
        assert bad.status_code == 400 and "upload id" in bad.json()["detail"]
        empty = await client.post("/api/analyze", json={"images": []})
        assert empty.status_code == 400 and empty.json()["detail"]
        wrong = await client.post("/api/analyze", json={"pictures": ids})
        assert wrong.status_code == 422 and "images" in wrong.json()["detail"]
