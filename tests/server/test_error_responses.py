"""Errors at the edge, through a real server on loopback: every refusal answers `detail` (both
languages, as before) plus its catalogue `code` and `params`, with the status chosen for that
code, whether it comes from a route, the queue, validation or the middleware before routing;
the catalogue itself is served to the page."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets

from backend.contracts import messages
from backend.web.error_responses import STATUS
from tests.helpers.images import encoded, scene

TOKEN = "t0ken-for-errors"


CLIENT_HEADERS = {"Authorization": f"Bearer {TOKEN}"}  # the folder's `client` sends it


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    """The folder's `server` starts with this environment."""
    empty = tmp_path_factory.mktemp("no-weights")
    return {
        "STUDIO_TOKEN": TOKEN,
        "STUDIO_DEFAULT_ENGINE": "morph",
        "STUDIO_MAX_IMAGES_PER_JOB": "2",
        "STUDIO_MAX_JSON_BODY_KB": "4",
        "FACEXLIB_DIR": str(empty),
        "CODEFORMER_DIR": str(empty),
        # The weights' host: a closed port, so the face-restore stage fails at once.
        "STUDIO_WEIGHTS_MIRROR": "http://127.0.0.1:9",
        "STUDIO_WEIGHTS_DOWNLOAD_TIMEOUT_S": "2",
    }


def _check(r: httpx.Response, code: str, **params) -> dict:
    body = r.json()
    assert r.status_code == STATUS[code], (r.status_code, body)
    assert body["code"] == code
    assert body["detail"] == messages.bilingual(code, body["params"])
    for name, value in params.items():
        assert body["params"][name] == value
    return body


def test_the_catalogue_is_served_to_the_page(server, client):
    assert client.get("/api/messages").json()["messages"] == messages.CATALOGUE
    # Behind the token like every route: the page asks again after its login.
    assert httpx.get(server.url + "/api/messages", timeout=10).status_code == 401


def test_framework_refusals_carry_a_code_too(server, client):
    bad = client.post("/api/jobs", content=b"d{p\xff\xfe", headers={"Content-Type": "application/json"})
    _check(bad, "body_unreadable")
    assert bad.json()["detail"].startswith("There was an error parsing the body / ")
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert missing.json()["detail"] == "Not Found / 찾을 수 없습니다"
    assert client.put("/api/jobs").json()["code"] == "method_not_allowed"


def test_middleware_refusals_carry_their_code(server):
    r = httpx.get(server.url + "/api/jobs", timeout=10)
    _check(r, "token_missing")
    assert r.json()["detail"] == "접근 토큰이 필요합니다. / An access token is required."
    _check(httpx.get(server.url + "/api/jobs", headers={"Authorization": "Bearer wrong"}, timeout=10), "token_wrong")
    _check(
        httpx.get(server.url + "/api/jobs", headers={"Host": "evil.example"}, timeout=10),
        "bad_host",
        host="evil.example",
    )
    big = httpx.post(
        server.url + "/api/params",
        content=b"{" + b" " * 8000 + b"}",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=10,
    )
    _check(big, "body_too_large", kb=4)


def test_route_queue_and_validation_errors_carry_their_code(client):
    body = _check(client.get("/api/jobs/nope"), "job_not_found", job_id="nope")
    assert body["detail"] == "job nope not found / 작업 nope을(를) 찾을 수 없습니다"
    _check(client.get("/api/uploads/nope"), "upload_not_found", upload_id="nope")
    _check(client.post("/api/jobs", json={"images": ["a", "b", "c"]}), "too_many_images", limit=2, count=3)
    _check(client.post("/api/jobs", json={"images": ["a", "b"]}), "job_image_missing", upload_id="a")
    invalid = _check(client.post("/api/jobs", json={"images": "x"}), "invalid_request")
    assert invalid["detail"].startswith("invalid request: images")
    _check(client.post("/api/analyze", json={"images": []}), "analyze_no_images")
    r = client.post("/api/uploads", files={"files": ("notes.txt", b"not an image", "image/png")})
    _check(r, "image_not_an_image", name="notes.txt")
    assert r.json()["detail"] == "'notes.txt': not a PNG, JPEG or WebP image / PNG, JPEG, WebP 이미지가 아닙니다"
    up = client.post("/api/uploads", files={"files": ("a.png", encoded(scene(64, 48)), "image/png")})
    assert up.status_code == 201
    ids = [up.json()["uploads"][0]["id"]] * 2
    job = client.post("/api/jobs", json={"images": ids, "engine": "morph", "settings": {"seconds": 0.5}})
    assert job.status_code == 201
    retry = client.post(f"/api/jobs/{job.json()['id']}/retry")
    assert retry.status_code == 409 and retry.json()["code"] in ("job_not_retryable",)
    _check(client.delete(f"/api/uploads/{ids[0]}"), "upload_in_use", upload_id=ids[0])


def test_a_failed_job_keeps_its_sentence_and_its_code(server, client):
    up = client.post("/api/uploads", files={"files": ("a.png", encoded(scene(64, 64)), "image/png")})
    ids = [up.json()["uploads"][0]["id"]] * 2
    ws_url = server.url.replace("http", "ws") + f"/ws?token={TOKEN}"

    async def failed_event(job_id_box: list) -> dict:
        async with websockets.connect(ws_url) as ws:
            job = await asyncio.to_thread(
                client.post,
                "/api/jobs",
                json={
                    "images": ids,
                    "settings": {"seconds": 0.5},
                    "postprocess": {"mode": "manual", "face_restore": True},
                },
            )
            job_id_box.append(job.json()["id"])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                event = json.loads(await asyncio.wait_for(ws.recv(), 120))
                if event.get("type") == "job.failed" and event.get("job_id") == job_id_box[0]:
                    return event
        raise AssertionError("no job.failed event")

    box: list = []
    event = asyncio.run(failed_event(box))
    job = client.get(f"/api/jobs/{box[0]}").json()
    said = job["error_message"]
    # The stage's own sentence (the missing file and where it goes), stored as one text.
    assert said["code"] in ("job_failed_model", "job_failed_text", "postprocess_stage_failed")
    assert job["error"] == messages.bilingual(said["code"], said["params"])
    assert "detection_Resnet50_Final.pth" in job["error"]
    assert "no-weights" not in json.dumps(said)  # server folders are named by their setting, as in `error`
    assert event["job"]["error_message"] == said and event["job"]["error"] == job["error"]
    # Retrying clears the error; the code goes with it.
    again = client.post(f"/api/jobs/{box[0]}/retry").json()
    assert again["error"] is None and again["error_message"] is None
