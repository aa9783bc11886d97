"""Page paths against a real server on loopback: a NUL in a path is not found (404, never a 500 from
`Path.resolve`), and HEAD on the pages and their modules is answered as GET is, without a body."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.helpers.server import StudioServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with StudioServer(tmp_path_factory.mktemp("pages")) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _raw(port: int, request: bytes) -> bytes:
    """One request on a fresh socket, as sent (httpx would re-encode the path)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


@pytest.mark.parametrize("path", ["/js/a%00b", "/js/%00", "/js/studio/main.js%00.png", "/vendor/%00/x.js"])
def test_a_nul_in_a_page_path_is_not_found(server, client, path):
    r = client.get(path)
    assert r.status_code == 404, (r.status_code, r.text)
    assert r.json()["code"] in ("not_found", "http_error")
    raw = _raw(server.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 404 "), raw[:200]
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("path", ["/", "/monitor", "/js/studio/main.js"])
def test_head_on_the_pages_is_get_without_a_body(server, client, path):
    got = client.get(path)
    assert got.status_code == 200 and got.content
    head = client.head(path)
    assert head.status_code == 200, (head.status_code, head.text)
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))
    raw = _raw(server.port, f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    head_part, _, rest = raw.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 200 ") and rest == b"", raw[:300]
    missing = client.head("/js/no-such-module.js")
    assert missing.status_code == 404 and missing.content == b""
