"""Exports through the real server (uvicorn on loopback, a real morph job, real files): each format
is decoded back (PyAV, Pillow, zipfile) and its frame count, size and rate checked against the
job's video; progress arrives over /ws as `job.export`; bad requests are refused with catalogue
sentences in both languages; the event loop keeps answering while an export encodes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
import time
import zipfile

import av
import httpx
import numpy as np
import pytest
import websockets
from PIL import Image

from backend.pipeline.export_encoding import output_indices
from backend.utils.video_io import probe, read_frames
from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer

HANGUL = re.compile("[\uac00-\ud7a3]")
SIZE = 128


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exports")
    with (
        StudioServer(tmp, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        files = [
            ("files", (f"i{i}.png", encoded(scene(SIZE, SIZE, shift=8 * i, hue=40 * i)), "image/png")) for i in range(3)
        ]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        job_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": SIZE}}).json()[
            "id"
        ]
        job = wait_for(c, job_id)
        assert job["status"] == "completed", job
        yield srv, c, job, ids


def _export(c: httpx.Client, job_id: str, body: dict, timeout: float = 120.0) -> dict:
    answer = c.post(f"/api/jobs/{job_id}/exports", json=body)
    assert answer.status_code == 202, answer.text
    view = answer.json()
    assert view["state"] in ("queued", "running", "done") and view["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = c.get(f"/api/jobs/{job_id}/exports/{view['id']}").json()
        if view["state"] in ("done", "failed"):
            assert view["state"] == "done", view
            return view
        time.sleep(0.05)
    raise AssertionError(f"export not done: {view}")


def _download(srv, c: httpx.Client, view: dict) -> bytes:
    assert view["url"].startswith(f"/files/outputs/{view['job_id']}/exports/")
    answer = c.get(view["url"])
    assert answer.status_code == 200
    assert len(answer.content) == view["bytes"]
    return answer.content


def _decode(data: bytes) -> tuple[list[np.ndarray], list[float], str]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames, times = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time))
        return frames, times, stream.codec_context.name


def _fps(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_each_format_decodes_to_the_frames_size_and_rate_asked_for(studio):
    srv, c, job, _ = studio
    job_id = job["id"]
    final = srv.data_dir / "outputs" / job_id / "final.mp4"
    info = probe(final)
    source = read_frames(final)
    assert (info.width, info.height, info.fps, info.frames) == (SIZE, SIZE, 30.0, 37 * 2 - 1)

    # WebM at the video's own size and rate: VP9, every frame.
    view = _export(c, job_id, {"format": "webm"})
    frames, times, codec = _decode(_download(srv, c, view))
    assert codec == "vp9" and len(frames) == info.frames == view["frames"]
    assert frames[0].shape == (SIZE, SIZE, 3) and abs(_fps(times) - 30) < 0.5
    assert _diff(frames[40], source[40]) < 6  # the same picture, through a lossy codec
    assert view["filename"] == f"job-{job_id[:8]}.webm"

    # WebM at a chosen width and rate: the height follows, frames are dropped to the rate.
    view = _export(c, job_id, {"format": "webm", "width": 64, "fps": 15})
    frames, times, _ = _decode(_download(srv, c, view))
    assert len(frames) == len(output_indices(info.frames, 30, 15)) == 37 and frames[0].shape == (64, 64, 3)
    assert abs(_fps(times) - 15) < 0.5

    # GIF, size and rate chosen: 10 fps from 30 keeps every third frame.
    view = _export(c, job_id, {"format": "gif", "width": 96, "fps": 10})
    data = _download(srv, c, view)
    assert data[:6] == b"GIF89a"
    frames, times, codec = _decode(data)
    assert codec == "gif" and len(frames) == 25 == view["frames"] and frames[0].shape == (96, 96, 3)
    assert abs(_fps(times) - 10) < 0.6, times[:4]
    with Image.open(io.BytesIO(data)) as gif:  # another decoder agrees
        assert gif.n_frames == 25 and gif.size == (96, 96)
        assert abs(gif.info["duration"] - 100) <= 10  # ms per frame
    # The colours survive the 256-colour palette (frame 24 shows source frame 72).
    small = np.asarray(Image.fromarray(source[72]).resize((96, 96), Image.BOX))
    assert _diff(frames[24], small) < 8, _diff(frames[24], small)

    # GIF defaults: at most 480 wide (this video is smaller: its own) and 15 fps.
    view = _export(c, job_id, {"format": "gif"})
    assert (view["width"], view["fps"], view["frames"]) == (SIZE, 15, len(output_indices(info.frames, 30, 15)))

    # Every frame as PNG, in order, lossless.
    view = _export(c, job_id, {"format": "frames_zip"})
    with zipfile.ZipFile(io.BytesIO(_download(srv, c, view))) as archive:
        names = archive.namelist()
        assert len(names) == info.frames == view["frames"] and names[0] == "frame_00000.png"
        assert names == sorted(names)
        for i in (0, 36, info.frames - 1):
            png = np.asarray(Image.open(io.BytesIO(archive.read(names[i]))).convert("RGB"))
            assert np.array_equal(png, source[i]), i
    assert view["filename"].endswith("-frames.zip")

    # One frame: the last by default, the first, or a number; exactly the decoded frame.
    for body, index in (({}, info.frames - 1), ({"frame": "first"}, 0), ({"frame": 40}, 40), ({"frame": "last"}, 72)):
        view = _export(c, job_id, {"format": "frame_png", **body})
        png = np.asarray(Image.open(io.BytesIO(_download(srv, c, view))).convert("RGB"))
        assert view["frame"] == index and np.array_equal(png, source[index]), body
    assert view["filename"] == f"job-{job_id[:8]}-frame72.png"

    # Ping-pong: forwards, then backwards without either end twice (a seamless loop).
    view = _export(c, job_id, {"format": "pingpong_mp4"})
    frames, times, codec = _decode(_download(srv, c, view))
    n = info.frames
    assert codec == "h264" and len(frames) == 2 * n - 2 == view["frames"] and abs(_fps(times) - 30) < 0.5
    for k in (0, 10, n - 3):
        assert _diff(frames[n + k], source[n - 2 - k]) < 4, k
    assert _diff(frames[5], source[5]) < 4

    # The files sit under outputs/<job>/exports/, each with its record.
    folder = srv.data_dir / "outputs" / job_id / "exports"
    assert (folder / f"{view['id']}.mp4").is_file() and (folder / f"{view['id']}.json").is_file()
    assert not list(folder.glob(".partial-*")) and not list(folder.glob("*.npy"))
    listed = c.get(f"/api/jobs/{job_id}/exports").json()
    assert listed[0]["id"] == view["id"] and len(listed) >= 10


def test_one_take_is_exported_from_its_own_file(studio):
    srv, c, job, _ = studio
    take = job["transitions"][1]["takes"][0]
    segment = read_frames(srv.data_dir / "outputs" / job["id"] / take["video_url"].rsplit("/", 1)[1])
    view = _export(c, job["id"], {"format": "gif", "take": {"index": 1, "take": 1}, "fps": 30})
    frames, _, _ = _decode(_download(srv, c, view))
    assert len(frames) == len(segment) == take["frames"] == 37
    assert _diff(frames[0], segment[0]) < 8 and _diff(frames[-1], segment[-1]) < 8
    assert view["filename"] == f"job-{job['id'][:8]}-transition2-take1.gif"
    png = _export(c, job["id"], {"format": "frame_png", "take": {"index": 0, "take": 1}})
    assert png["frame"] == 36


def test_progress_arrives_over_the_socket_until_done(studio):
    srv, c, job, _ = studio

    async def run() -> list[dict]:
        events = []
        async with websockets.connect(srv.ws_url) as ws:
            assert json.loads(await ws.recv())["type"] == "snapshot"
            answer = await asyncio.to_thread(c.post, f"/api/jobs/{job['id']}/exports", json={"format": "frames_zip"})
            assert answer.status_code == 202
            export_id = answer.json()["id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic()))
                if msg["type"] == "job.export" and msg["export"]["id"] == export_id:
                    events.append(msg)
                    if msg["export"]["state"] in ("done", "failed"):
                        return events
        raise AssertionError("no final export event")

    events = asyncio.run(run())
    states = [e["export"]["state"] for e in events]
    assert states[0] == "queued" and states[-1] == "done" and "running" in states, states
    assert all(e["job_id"] == job["id"] and e["ts"] > 0 for e in events)
    progress = [e["export"]["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert events[-1]["export"]["url"].endswith(".zip")


def test_bad_requests_are_refused_with_catalogue_sentences(studio):
    srv, c, job, ids = studio
    job_id = job["id"]
    cases = [
        ({"format": "bmp"}, 422, "export_unknown_format"),
        ({"format": "gif", "width": 8}, 422, "export_bad_width"),
        ({"format": "gif", "width": 5000}, 422, "export_bad_width"),
        ({"format": "webm", "width": 9000}, 422, "export_bad_width"),
        ({"format": "gif", "fps": 0.5}, 422, "export_bad_fps"),
        ({"format": "gif", "fps": 200}, 422, "export_bad_fps"),
        ({"format": "frame_png", "frame": 73}, 422, "export_bad_frame"),
        ({"format": "frame_png", "frame": -1}, 422, "export_bad_frame"),
        ({"format": "gif", "width": "wide"}, 422, "invalid_request"),
        ({"format": "gif", "take": {"index": 7, "take": 1}}, 404, "transition_not_found"),
        ({"format": "gif", "take": {"index": 0, "take": 9}}, 404, "take_not_found"),
    ]
    for body, status, code in cases:
        answer = c.post(f"/api/jobs/{job_id}/exports", json=body)
        assert answer.status_code == status and answer.json()["code"] == code, (body, answer.text)
        english, korean = answer.json()["detail"].split(" / ", 1)
        assert english and HANGUL.search(korean), answer.text
    missing = c.post("/api/jobs/nope/exports", json={"format": "gif"})
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"
    unknown = c.get(f"/api/jobs/{job_id}/exports/0123456789ab")
    assert unknown.status_code == 404 and unknown.json()["code"] == "export_not_found"
    traversal = c.get(f"/api/jobs/{job_id}/exports/..%2f..%2ffinal")
    assert traversal.status_code == 404

    # A job that is not finished: a long one, asked at once, then cancelled.
    long_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 15, "resolution": SIZE}}).json()["id"]
    try:
        answer = c.post(f"/api/jobs/{long_id}/exports", json={"format": "gif"})
        assert answer.status_code == 409 and answer.json()["code"] == "export_job_not_finished", answer.text
        assert answer.json()["params"]["status"] in ("queued", "running")
        assert "완료된 작업만" in answer.json()["detail"]
    finally:
        c.post(f"/api/jobs/{long_id}/cancel")
        wait_for(c, long_id)


def test_the_event_loop_keeps_answering_while_an_export_encodes(studio):
    """Encoding runs on the export thread: small requests are answered meanwhile. The bound is
    loose (a busy 2-core machine), far below the export's own time."""
    srv, c, job, _ = studio
    answer = c.post(f"/api/jobs/{job['id']}/exports", json={"format": "pingpong_mp4", "width": 256})
    assert answer.status_code == 202
    export_id = answer.json()["id"]
    latencies, stop = [], threading.Event()

    def poll():
        with httpx.Client(base_url=srv.url, timeout=30) as other:
            while not stop.is_set():
                start = time.monotonic()
                assert other.get("/api/meta").status_code == 200
                latencies.append(time.monotonic() - start)
                time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        view = {"state": "queued"}
        deadline = time.monotonic() + 120
        while view["state"] not in ("done", "failed") and time.monotonic() < deadline:
            view = c.get(f"/api/jobs/{job['id']}/exports/{export_id}").json()
            time.sleep(0.05)
    finally:
        stop.set()
        poller.join()
    assert view["state"] == "done", view
    assert latencies and max(latencies) < 2.0, max(latencies)
