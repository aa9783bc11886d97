"""A multipart upload must end with its closing boundary, against a real server on loopback: a body
cut off before `--boundary--` (inside a file, after a file, or with the final `--` missing) is
refused with 400 `upload_unterminated` in English and Korean, and nothing of it stays on disk or in
the store; the same body with its closing boundary is stored."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from tests.helpers.images import encoded, scene
from tests.helpers.server import StudioServer

BOUNDARY = "end-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with StudioServer(tmp_path_factory.mktemp("mpend"), {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _part(data: bytes, name: str = "a.png") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + data


def _post(client: httpx.Client, body: bytes) -> httpx.Response:
    return client.post(
        "/api/uploads", content=body, headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    )


def _kept(server) -> list:
    folders = [server.data_dir / "uploads", server.data_dir / ".incoming"]
    return [p for folder in folders if folder.is_dir() for p in folder.iterdir()]


def _rows(server) -> int:
    with sqlite3.connect(server.data_dir / "studio.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM uploads").fetchone()[0]


PNG = encoded(scene(48, 40))
CUT = {
    "no closing boundary": _part(PNG) + b"\r\n",
    "nothing after the file": _part(PNG),
    "closing boundary without its dashes": _part(PNG) + f"\r\n--{BOUNDARY}\r\n".encode(),
    "second file cut off": _part(PNG) + b"\r\n" + _part(PNG[: len(PNG) // 2], "b.png"),
    "last dash missing": _part(PNG) + f"\r\n--{BOUNDARY}-".encode(),
}


@pytest.mark.parametrize("case", list(CUT))
def test_an_upload_without_its_closing_boundary_is_refused_and_nothing_is_kept(server, client, case):
    rows = _rows(server)
    r = _post(client, CUT[case])
    assert r.status_code == 400, (case, r.status_code, r.text)
    body = r.json()
    assert body["code"] == "upload_unterminated", body
    assert "boundary" in body["detail"] and "경계" in body["detail"], body["detail"]
    assert _kept(server) == [], _kept(server)
    assert _rows(server) == rows


def test_the_same_upload_with_its_closing_boundary_is_stored(server, client):
    r = _post(client, _part(PNG) + f"\r\n--{BOUNDARY}--\r\n".encode())
    assert r.status_code == 201, r.text
    upload = r.json()["uploads"][0]
    assert (server.data_dir / "uploads" / f"{upload['id']}.png").is_file()
    assert client.delete(f"/api/uploads/{upload['id']}").status_code == 204
    # Without the final CRLF (it is optional) it is whole too.
    r = _post(client, _part(PNG) + f"\r\n--{BOUNDARY}--".encode())
    assert r.status_code == 201, r.text
    assert client.delete(f"/api/uploads/{r.json()['uploads'][0]['id']}").status_code == 204
