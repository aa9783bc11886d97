"""Every bad input gets its 4xx with a readable message, and leaves no file behind."""

from __future__ import annotations

import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.helpers.images import encoded, scene


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width×height pixels (the IDAT holds a few zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


# The folder's `server` and `client`.
SERVER_ENV = {"STUDIO_MAX_UPLOAD_MB": "0.2", "STUDIO_MAX_IMAGE_PIXELS": "1000000", "STUDIO_DEFAULT_ENGINE": "morph"}


def stored_files(server) -> list[str]:
    uploads = server.data_dir / "uploads"
    return sorted(p.name for p in uploads.rglob("*") if p.is_file())


def good_png() -> bytes:
    return encoded(scene(64, 48))


@pytest.mark.parametrize(
    "name,payload,status,words",
    [
        ("notes.txt", b"hello, not an image", 415, "not a PNG, JPEG or WebP"),
        ("anim.gif", encoded(scene(32, 32), "GIF"), 415, "GIF images are not supported"),
        ("bomb.png", png_bomb(20000, 20000), 413, "too large"),
        (
            "huge.png",
            encoded(Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))),
            413,
            "larger than 0.2 MB",
        ),
        ("cut.png", good_png()[:200], 422, "corrupt or truncated"),
        ("empty.png", b"", 422, "empty"),
        ("tiny.png", encoded(scene(8, 8)), 422, "too small"),
    ],
)
def test_bad_upload_is_refused_naming_the_file_and_leaves_nothing(server, client, name, payload, status, words):
    before = stored_files(server)
    files = [("files", ("ok.png", good_png(), "image/png")), ("files", (name, payload, "image/png"))]
    r = client.post("/api/uploads", files=files)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert name in detail and words in detail
    # All or nothing: the good file of the same request was removed too.
    assert stored_files(server) == before


def test_upload_without_multipart_is_refused(client):
    r = client.post("/api/uploads", content=b"raw", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 415 and "multipart" in r.json()["detail"]
    r = client.post("/api/uploads", data={"other": "x"}, files=[("wrong", ("a.png", good_png(), "image/png"))])
    assert r.status_code == 422 and "files" in r.json()["detail"]


def test_declared_oversize_body_is_refused_before_reading(server):
    # A raw socket: announce 10 GB, send 10 bytes, and the answer still comes at once.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=abc\r\n"
            b"Content-Length: 10000000000\r\n\r\n0123456789"
        )
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413"), answer


def test_exif_orientation_is_applied_and_ids_are_server_made(server, client):
    img = scene(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    data = encoded(img, "JPEG", exif=exif.tobytes())
    r = client.post("/api/uploads", files=[("files", ("../../etc/passwd.jpg", data, "image/jpeg"))])
    assert r.status_code == 201, r.text
    up = r.json()["uploads"][0]
    assert (up["width"], up["height"]) == (40, 80)
    assert up["filename"] == "passwd.jpg"
    assert (server.data_dir / "uploads" / f"{up['id']}.png").exists()
    assert "passwd" not in up["id"]


@pytest.mark.parametrize(
    "body,status,words",
    [
        ({"images": ["x"]}, 422, "at least 2"),
        ({"images": ["nope1", "nope2"]}, 404, "not found"),
        ({"images": ["a", "b", "c"], "prompts": ["only one"]}, 422, "one entry per pair"),
        ({"images": ["a", "b"], "settings": {"quality": 200}}, 422, "quality"),
        ({"images": ["a", "b"], "engine": "sora"}, 422, "engine"),
        ({"images": ["a", "b"], "postprocess": {"mode": "manual", "upscale": 3}}, 422, "upscale"),
        ({"images": ["a", "b"], "surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_job_requests(client, body, status, words):
    r = client.post("/api/jobs", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_unknown_job_ids_are_404(client):
    for method, path in [("GET", "/api/jobs/nope"), ("POST", "/api/jobs/nope/cancel"), ("DELETE", "/api/jobs/nope")]:
        r = client.request(method, path)
        assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert client.get("/api/uploads/nope").status_code == 404


def test_too_long_transition_is_refused(client):
    ids = [
        u["id"]
        for u in client.post(
            "/api/uploads",
            files=[("files", ("a.png", good_png(), "image/png")), ("files", ("b.png", good_png(), "image/png"))],
        ).json()["uploads"]
    ]
    r = client.post("/api/jobs", json={"images": ids, "settings": {"seconds": 60}})
    assert r.status_code == 422 and "seconds per transition" in r.json()["detail"]
