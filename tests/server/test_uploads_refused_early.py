"""An upload refused before its body is read (429 per client, 503 all slots busy, 413 declared too
large) reaches a real client as its status and catalogue body, not as a connection reset: a real
uvicorn on loopback, a client writing a body of tens of MB over a real socket (as a browser does: the
whole body, then the answer) while the refusal goes out. Its writes must all succeed (no broken pipe,
no reset) and it must read the status. Bounded: a handful of requests, a few seconds each."""

from __future__ import annotations

import json
import select
import socket
import time

import httpx
import pytest

from tests.helpers.server import StudioServer

BOUNDARY = "refused-boundary"
BIG = 24 * 1024 * 1024  # far beyond the socket buffers: the client is still sending when refused


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {
        "STUDIO_MAX_UPLOADS_PER_CLIENT": "1",
        "STUDIO_MAX_UPLOADS_IN_FLIGHT": "2",
        "STUDIO_BODY_IDLE_TIMEOUT_S": "60",
        "STUDIO_BODY_MIN_RATE_KB_S": "0",
        "STUDIO_MAX_FILES_PER_UPLOAD": "2",
        "STUDIO_MAX_UPLOAD_MB": "16",
    }
    with StudioServer(tmp_path_factory.mktemp("refused"), env) as srv:
        yield srv


def _hold_slot(port: int, source: str) -> socket.socket:
    """An upload that sent its head and a little body, then waits: it holds an upload slot."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(
        (
            f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 1000000\r\n\r\n"
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
        ).encode()
    )
    return s


def _big_upload(url: str, size: int = BIG) -> httpx.Response:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n\r\n'.encode()
        + b"\0" * size
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    with httpx.Client(base_url=url, timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.1")) as c:
        return c.post(
            "/api/uploads", content=body, headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
        )


def _write_all_then_read(port: int, size: int) -> tuple[int, dict, bytes]:
    """Sends a whole upload of `size` bytes, then reads the answer: (status, headers, body). A write
    that fails (the server reset the connection) fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        head = (
            f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {size}\r\n\r\n"
        ).encode()
        try:
            s.sendall(head)
            chunk = b"\0" * (1024 * 1024)
            for start in range(0, size, len(chunk)):
                s.sendall(chunk[: size - start])
        except OSError as exc:
            pytest.fail(f"writing the body failed with {exc!r}: the answer was never read")
        return _read_answer(s)


def _read_answer(s: socket.socket) -> tuple[int, dict, bytes]:
    """One answer read by its Content-Length; when it says `Connection: close`, the server's close
    (EOF) must follow. A keep-alive answer (an upload that was not refused) is returned as it is,
    so the status assertion names it instead of a read timing out."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = s.recv(65536)
        assert chunk, f"the connection closed before an answer: {raw[:300]!r}"
        raw += chunk
    head_part, _, body = raw.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        chunk = s.recv(65536)
        assert chunk, "the connection closed inside the answer's body"
        body += chunk
    if headers.get("connection") == "close":
        assert s.recv(65536) == b"", "bytes after an answer that closes the connection"
    return int(lines[0].split()[1]), headers, body


class Holders:
    """Uploads that hold slots. One refused on arrival (the slot of the previous test's holder not
    yet released when it came: the server frees it when it sees that close) has its answer waiting
    and is sent again, so the slots end up held whatever the order the server saw things in."""

    def __init__(self, port: int, sources: list[str]) -> None:
        self.port = port
        self.held = {source: _hold_slot(port, source) for source in sources}
        self.answers: list[bytes] = []

    def renew(self) -> None:
        for source, s in list(self.held.items()):
            readable, _, _ = select.select([s], [], [], 0)
            if readable:  # answered (refused) or closed: it holds nothing
                try:
                    self.answers.append(s.recv(300))
                except OSError as exc:
                    self.answers.append(repr(exc).encode())
                s.close()
                self.held[source] = _hold_slot(self.port, source)

    def close(self) -> None:
        for s in self.held.values():
            s.close()


def _await_refusal(port: int, expected: int, holders: Holders) -> None:
    """Waits until a small upload is refused with `expected`: the holders' uploads have reached the
    server and hold their slots (on a busy machine that takes as long as it takes; bounded)."""
    deadline = time.monotonic() + 60
    while True:
        holders.renew()
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(
                (
                    f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: 4\r\n\r\nabcd"
                ).encode()
            )
            status = _read_answer(s)[0]
        if status == expected:
            return
        assert time.monotonic() < deadline, (
            f"the held slots never refused an upload (last answer {status}; holders answered: {holders.answers[-4:]})"
        )
        time.sleep(0.2)


def _refused(server, expected: int, code: str, size: int = BIG) -> None:
    for _ in range(3):  # every attempt, not just a lucky one
        started = time.monotonic()
        status, headers, body = _write_all_then_read(server.port, size)
        assert status == expected, (status, body[:300])
        answer = json.loads(body)
        assert answer["code"] == code and " / " in answer["detail"], answer
        assert headers["connection"] == "close"
        assert time.monotonic() - started < 20
        # httpx too (it reads the answer even when its write fails; it must get the same).
        r = _big_upload(server.url, size)
        assert r.status_code == expected and r.json()["code"] == code, r.text


def test_a_429_reaches_a_client_still_sending_its_body(server):
    holder = Holders(server.port, ["127.0.0.1"])
    try:
        _await_refusal(server.port, 429, holder)
        _refused(server, 429, "uploads_per_client")
    finally:
        holder.close()


def test_a_503_reaches_a_client_still_sending_its_body(server):
    holders = Holders(server.port, [f"127.0.0.{n}" for n in (21, 22)])
    try:
        _await_refusal(server.port, 503, holders)
        _refused(server, 503, "uploads_busy")
    finally:
        holders.close()


def test_a_413_from_the_declared_length_reaches_the_client(server):
    _refused(server, 413, "upload_too_large", 40 * 1024 * 1024)  # over 2 files x (16 MB + framing)


def test_the_server_still_serves_after_the_refusals(server):
    assert httpx.get(server.url + "/api/health", timeout=10).status_code == 200


def test_a_401_reaches_a_client_still_sending_its_body(tmp_path):
    """The token check refuses before the body limits see the request: it drains the body too."""
    env = {"STUDIO_TOKEN": "refused-early-token-0123456789", "STUDIO_LOGIN_MAX_FAILURES": "1000"}
    with StudioServer(tmp_path, env) as guarded:
        _refused(guarded, 401, "token_missing")
        # A GET is refused as before (no body to drain) and the server still answers the token.
        assert httpx.get(guarded.url + "/api/jobs", timeout=10).status_code == 401
        r = httpx.get(guarded.url + "/api/jobs", headers={"Authorization": f"Bearer {env['STUDIO_TOKEN']}"})
        assert r.status_code == 200
