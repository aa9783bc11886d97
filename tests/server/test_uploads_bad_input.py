"""Uploads against a real server on loopback: form fields, file names, truncated images, files in
progress, crashes mid-upload, JSON size and image-count caps, and stray WebSocket frames."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from PIL import Image

from backend.jobs.store import Store
from tests.helpers.images import encoded, scene
from tests.helpers.server import StudioServer

BOUNDARY = "harden-boundary"


SERVER_ENV = {"STUDIO_MAX_FILES_PER_UPLOAD": "2", "STUDIO_DEFAULT_ENGINE": "morph"}  # the folder's `server`


def multipart(parts: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """(field name, raw filename bytes or None for a text field, content) → a multipart body,
    byte for byte as given (clients escape odd names; a hostile one need not)."""
    out = b""
    for name, filename, content in parts:
        disposition = b'form-data; name="' + name.encode() + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        out += (
            b"--"
            + BOUNDARY.encode()
            + b"\r\nContent-Disposition: "
            + disposition
            + b"\r\n"
            + (b"Content-Type: image/png\r\n" if filename is not None else b"")
            + b"\r\n"
            + content
            + b"\r\n"
        )
    return out + b"--" + BOUNDARY.encode() + b"--\r\n"


def post_multipart(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post(
        "/api/uploads", content=body, headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    )


def png(shift: int = 0) -> bytes:
    return encoded(scene(48, 40, shift=shift))


def test_text_fields_do_not_count_toward_the_file_limit(client):
    parts = [
        ("note", None, b"a"),
        ("files", b"a.png", png(0)),
        ("order", None, b"1"),
        ("files", b"b.png", png(4)),
        ("extra", None, b"x"),
    ]
    r = post_multipart(client, multipart(parts))
    assert r.status_code == 201, r.text
    assert [u["filename"] for u in r.json()["uploads"]] == ["a.png", "b.png"]
    # The file limit still holds for files...
    r = post_multipart(client, multipart([("files", f"{i}.png".encode(), png(i)) for i in range(3)]))
    assert r.status_code == 413 and "at most 2" in r.json()["detail"]
    # ...and text fields have their own small bound.
    r = post_multipart(client, multipart([("f", None, b"x")] * 40 + [("files", b"a.png", png())]))
    assert r.status_code == 413 and "form fields" in r.json()["detail"]


def test_stored_filenames_lose_control_and_bidi_characters(client):
    raw = "in\x00voice\u202egnp.exe\u200b.png".encode()
    r = post_multipart(client, multipart([("files", raw, png())]))
    assert r.status_code == 201, r.text
    upload = r.json()["uploads"][0]
    assert upload["filename"] == "invoicegnp.exe.png"
    assert client.get(f"/api/uploads/{upload['id']}").json()["filename"] == "invoicegnp.exe.png"


def test_a_truncated_webp_is_called_truncated(client):
    webp = encoded(Image.fromarray(np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)), "WEBP")
    for cut in (60, len(webp) // 2):
        r = client.post("/api/uploads", files=[("files", ("cut.webp", webp[:cut], "image/webp"))])
        assert r.status_code == 422, (cut, r.status_code, r.text)
        detail = r.json()["detail"]
        assert "cut.webp" in detail and "corrupt or truncated" in detail and "잘렸" in detail
        assert "not a PNG" not in detail


def _start_upload(port: int, sent: int = 300_000, total: int = 2_000_000) -> socket.socket:
    """A raw upload that sends its headers and part of one file, then waits."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {total}\r\n\r\n".encode()
        + head
        + b"\x89PNG\r\n\x1a\n"
        + b"\0" * sent
    )
    return sock


def _parts(server) -> list:
    return sorted(server.data_dir.rglob("*.part"))


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_files_in_progress_are_never_served(server, client):
    sock = _start_upload(server.port)
    try:
        assert _wait_for(lambda: _parts(server)), "the upload never started"
        uploads = server.data_dir / "uploads"
        for part in _parts(server):
            for url in (f"/files/uploads/.incoming/{part.name}", f"/files/uploads/{part.name}"):
                assert client.get(url).status_code == 404, url
            assert uploads not in part.parents, part  # kept outside the served folder
        # Dot names are refused under /files/ whatever is there.
        (uploads / ".hidden.png").write_bytes(png())
        assert client.get("/files/uploads/.hidden.png").status_code == 404
    finally:
        sock.close()
    assert _wait_for(lambda: not _parts(server)), "the abandoned part was not removed"


def test_a_binary_websocket_frame_is_ignored(server):
    async def talk():
        async with websockets.connect(server.ws_url, open_timeout=10) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "snapshot"
            await ws.send(b"\x00\x01binary")
            await ws.send("text")
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)  # still served after both
            return True

    assert asyncio.run(talk())
    time.sleep(0.3)
    assert "KeyError" not in server.log()


def test_json_bodies_and_image_lists_are_capped_before_any_work(client):
    ids = ["a" * 24, "b" * 24]
    padded = json.dumps({"images": ids, "engine": "morph"}).encode() + b" " * (2 * 1024 * 1024)
    r = client.post("/api/jobs", content=padded, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert "too large" in r.json()["detail"] and "너무 큽니다" in r.json()["detail"]
    # Over the configured count: refused by the count, before any id is looked up.
    many = [f"{i:024x}" for i in range(33)]
    for path in ("/api/jobs", "/api/params"):
        r = client.post(path, json={"images": many, "engine": "morph"})
        assert r.status_code == 422, (path, r.text)
        assert "at most 32 images" in r.json()["detail"] and "최대 32장" in r.json()["detail"]
    # A huge list within the byte cap stops at the count too, quickly.
    started = time.monotonic()
    r = client.post("/api/jobs", json={"images": [f"{i:024x}" for i in range(20_000)], "engine": "morph"})
    assert r.status_code == 422 and time.monotonic() - started < 5, r.text


def test_kill_9_mid_upload_leaves_nothing_behind_after_a_restart(tmp_path):
    data = tmp_path / "data"
    with StudioServer(tmp_path, {"STUDIO_DATA_DIR": str(data)}) as first:
        sock = _start_upload(first.port)
        assert _wait_for(lambda: _parts(first)), "the upload never started"
        first.kill()
        sock.close()
    assert _parts(first), "kill -9 should have left the part file this test is about"
    uploads = data / "uploads"
    # What a crash at other moments leaves: a finished image whose row was saved but not yet
    # renamed into place, an image file without a row, and parts where older versions kept them.
    store = Store(data / "studio.sqlite3")
    staged_id, orphan_id = "1" * 24, "2" * 24
    store.add_upload(staged_id, "staged.png", 48, 40, 100)
    store.close()
    (data / ".incoming").mkdir(exist_ok=True)
    (data / ".incoming" / f"{staged_id}.png").write_bytes(png())
    (uploads / f"{orphan_id}.png").write_bytes(png()[:50])
    (uploads / ".incoming").mkdir(exist_ok=True)
    (uploads / ".incoming" / "old.part").write_bytes(b"x")
    with StudioServer(tmp_path, {"STUDIO_DATA_DIR": str(data)}) as second:
        assert _parts(second) == []
        assert not (uploads / f"{orphan_id}.png").exists()
        assert not (uploads / ".incoming").exists()
        assert (uploads / f"{staged_id}.png").read_bytes() == png()
        r = httpx.get(f"{second.url}/files/uploads/{staged_id}.png", timeout=10)
        assert r.status_code == 200 and r.content == png()
        leftovers = [p.name for p in (data / ".incoming").iterdir()] if (data / ".incoming").exists() else []
        assert leftovers == []
        # And a fresh upload still works, its file in place under its id.
        r = httpx.post(f"{second.url}/api/uploads", files=[("files", ("n.png", png(), "image/png"))], timeout=30)
        assert r.status_code == 201, r.text
        assert (uploads / f"{r.json()['uploads'][0]['id']}.png").exists()


def test_images_move_into_an_uploads_folder_on_another_file_system(tmp_path):
    """Docker mounts the uploads folder as its own volume: the staged image crosses file systems."""
    import tempfile

    from backend.web.uploads import move_into

    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system here (/dev/shm on the same device as the temp folder)")
    with tempfile.TemporaryDirectory(dir=other) as uploads:
        source = tmp_path / "a.png"
        source.write_bytes(png())
        target = Path(uploads) / "a.png"
        move_into(source, target)
        assert target.read_bytes() == png() and not source.exists()
        assert [p.name for p in Path(uploads).iterdir()] == ["a.png"]  # no temporary name left
