"""Keyframes inside a transition through the real server (uvicorn on loopback, SQLite, the tiny
FramePack of the real architecture): where each lands in the planned parameters, a job that runs
with one, a re-roll that keeps it (and one that drops it), and every refusal as a 422 with its
catalogue code, in English and Korean."""

from __future__ import annotations

import httpx
import pytest

from backend.contracts import messages
from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer


def _upload(c: httpx.Client, count: int) -> list[str]:
    files = [
        ("files", (f"k{i}.png", encoded(scene(96, 80, shift=9 * i, hue=40 * i)), "image/png")) for i in range(count)
    ]
    r = c.post("/api/uploads", files=files)
    assert r.status_code == 201, r.text
    return [u["id"] for u in r.json()["uploads"]]


def _refused(r: httpx.Response, code: str) -> dict:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == code, body
    for lang in ("en", "ko"):  # the one sentence, in both languages
        assert messages.render(code, lang, body["params"]) in body["detail"]
    return body["params"]


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_framepack_dir):
    tmp = tmp_path_factory.mktemp("keyframes")
    with (
        StudioServer(tmp, {"FRAMEPACK_DIR": str(tiny_framepack_dir)}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        yield srv, c


def test_a_keyframe_runs_and_a_reroll_keeps_it(studio):
    _srv, c = studio
    first, last, key = _upload(c, 3)
    body = {
        "images": [first, last],
        "engine": "framepack",
        "settings": {"seconds": 2.4, "quality": 10, "resolution": 64, "seed": 5},
        "keyframes": [{"transition": 0, "image": key, "at": 1.0}],
    }
    preview = c.post("/api/params", json={k: body[k] for k in ("images", "engine", "settings", "keyframes")})
    assert preview.status_code == 200, preview.text
    placed = [{"image": key, "at": 1.0, "point": 1, "lands_at": 1.2}]  # snapped to the section boundary
    assert preview.json()["params"]["segments"][0]["keyframes"] == placed

    r = c.post("/api/jobs", json=body)
    assert r.status_code == 201, r.text
    job = wait_for(c, r.json()["id"], timeout=600)
    assert job["status"] == "completed", job
    assert job["params"]["segments"][0]["keyframes"] == placed

    # A re-roll keeps the transition's keyframe; a longer take places it again on its own length.
    r = c.post(f"/api/jobs/{job['id']}/transitions/0/takes", json={"seed": 11, "seconds": 3.6})
    assert r.status_code == 202, r.text
    job = wait_for(c, job["id"], timeout=600)
    assert job["status"] == "completed", job
    take = job["transitions"][0]["takes"][-1]
    shown = [{**placed[0], "url": f"/files/uploads/{key}.png"}]  # a take's view links the image
    assert (take["take"], take["status"], take["keyframes"]) == (2, "done", shown)

    # A take of its own without keyframes; its neighbour transition's plan is untouched.
    r = c.post(f"/api/jobs/{job['id']}/transitions/0/takes", json={"seed": 12, "keyframes": []})
    assert r.status_code == 202, r.text
    job = wait_for(c, job["id"], timeout=600)
    assert job["status"] == "completed", job
    assert job["transitions"][0]["takes"][-1]["keyframes"] == []
    assert job["transitions"][0]["takes"][0]["keyframes"] == shown

    # A take with a keyframe image of its own; an image a job's keyframe uses cannot be deleted.
    (own,) = _upload(c, 1)
    r = c.post(
        f"/api/jobs/{job['id']}/transitions/0/takes", json={"seed": 13, "keyframes": [{"image": own, "at": 1.3}]}
    )
    assert r.status_code == 202, r.text
    job = wait_for(c, job["id"], timeout=600)
    assert job["status"] == "completed", job
    assert [(k["image"], k["point"]) for k in job["transitions"][0]["takes"][-1]["keyframes"]] == [(own, 1)]
    for image in (key, own):
        r = c.delete(f"/api/uploads/{image}")
        assert r.status_code == 409 and r.json()["code"] == "upload_in_use", r.text

    # A take's keyframe is checked against the take's own length.
    r = c.post(f"/api/jobs/{job['id']}/transitions/0/takes", json={"seconds": 1.2})
    assert _refused(r, "keyframe_transition_too_short")["n"] == 1


def test_wan_places_a_keyframe_on_a_latent_frame(studio):
    _srv, c = studio
    first, last, key = _upload(c, 3)
    r = c.post(
        "/api/params",
        json={
            "images": [first, last],
            "engine": "wan",
            "settings": {"seconds": 2, "resolution": 64},
            "keyframes": [{"transition": 0, "image": key, "at": 0.6}],
        },
    )
    assert r.status_code == 200, r.text
    segment = r.json()["params"]["segments"][0]
    # 33 frames at 16 fps: latent frames every 4 frames (0.25 s); 0.6 s snaps to latent 2 (0.5 s).
    assert segment["frames"] == 33 and segment["keyframes"] == [{"image": key, "at": 0.6, "point": 2, "lands_at": 0.5}]


@pytest.mark.parametrize(
    ("engine", "seconds", "keyframes", "code"),
    [
        ("morph", 2.4, [{"transition": 0, "at": 1.0}], "engine_no_keyframes"),
        ("framepack", 2.4, [{"transition": 0, "at": 2.4}], "keyframe_outside"),  # lands on the last image
        ("framepack", 2.4, [{"transition": 0, "at": 0.5}], "keyframe_outside"),  # snaps to the first image
        ("framepack", 3.6, [{"transition": 0, "at": 1.0}, {"transition": 0, "at": 1.4}], "keyframe_same_point"),
        ("framepack", 1.2, [{"transition": 0, "at": 0.6}], "keyframe_transition_too_short"),
        ("framepack", 9.6, [{"transition": 0, "at": 1.2 * (i + 1)} for i in range(5)], "keyframe_too_many"),
        ("framepack", 2.4, [{"transition": 3, "at": 1.0}], "keyframe_no_transition"),
        ("framepack", 2.4, [{"transition": 0, "at": 1.0, "image": "nope"}], "keyframe_image_missing"),
        ("wan", 2.0, [{"transition": 0, "at": 1.95}], "keyframe_outside"),
    ],
)
def test_refusals(studio, engine, seconds, keyframes, code):
    _srv, c = studio
    first, last, key = _upload(c, 3)
    keyframes = [{"image": key, **k} for k in keyframes]
    body = {
        "images": [first, last],
        "engine": engine,
        "settings": {"seconds": seconds, "resolution": 64, "quality": 10},
        "keyframes": keyframes,
    }
    _refused(c.post("/api/params", json=body), code)
    if engine != "wan":  # Wan is not installed here: a job for it is refused for that first
        _refused(c.post("/api/jobs", json=body), code)


def test_a_malformed_keyframe_is_invalid(studio):
    _srv, c = studio
    first, last = _upload(c, 2)
    for bad in ({"transition": 0, "image": first, "at": 0}, {"transition": -1, "image": first, "at": 1}, {"at": 1}):
        r = c.post("/api/jobs", json={"images": [first, last], "engine": "framepack", "keyframes": [bad]})
        assert r.status_code == 422 and r.json()["code"] == "invalid_request", r.text
