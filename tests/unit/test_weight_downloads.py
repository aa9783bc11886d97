"""The resumable downloader and the weight registry against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.utils.downloads import ChecksumMismatch, DownloadError, download_file
from backend.utils.model_registry import WEIGHTS, MissingWeightError, ensure_weight, weight_path
from backend.utils.progress import Progress
from tests.helpers.postprocess import make_settings

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """Serves PAYLOAD with Range support; the first `cut` requests die half-way through."""

    def __init__(self, cut: int = 0) -> None:
        self.cut = cut
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(dict(self.headers))
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut > 0:
                    outer.cut -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # the connection breaks mid-body
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weights.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused, like no network
    return f"http://127.0.0.1:{port}/weights.pth"


def test_download_verifies_and_reports_progress(tmp_path):
    seen = []
    with _Server() as server:
        path = download_file(server.url, tmp_path / "w.pth", SHA, len(PAYLOAD), progress=seen.append)
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "w.pth.part").exists()
    assert seen and seen[-1].done == len(PAYLOAD) and seen[-1].total == len(PAYLOAD)


def test_download_resumes_after_a_cut_connection(tmp_path):
    with _Server(cut=1) as server:
        path = download_file(server.url, tmp_path / "w.pth", SHA, len(PAYLOAD))
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 2
    # the second request asked only for what was missing
    assert server.requests[1]["Range"] == f"bytes={len(PAYLOAD) // 2}-"


def test_download_resumes_a_part_file_left_by_an_earlier_run(tmp_path):
    (tmp_path / "w.pth.part").write_bytes(PAYLOAD[:1000])
    with _Server() as server:
        download_file(server.url, tmp_path / "w.pth", SHA)
    assert (tmp_path / "w.pth").read_bytes() == PAYLOAD
    assert server.requests[0]["Range"] == "bytes=1000-"


def test_checksum_mismatch_leaves_no_file(tmp_path):
    with _Server() as server, pytest.raises(ChecksumMismatch):
        download_file(server.url, tmp_path / "w.pth", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_fails_at_once(tmp_path):
    with pytest.raises(DownloadError):
        download_file(_closed_port_url(), tmp_path / "w.pth", SHA, timeout=5)
    assert not (tmp_path / "w.pth").exists()


def test_ensure_weight_downloads_on_first_use_with_progress(tmp_path):
    settings = make_settings(tmp_path)
    events: list[Progress] = []
    with _Server() as server:
        path = ensure_weight("codeformer", settings, events.append, stage="face_restore", url=server.url)
        again = ensure_weight("codeformer", settings, events.append)  # present: no second request
        assert len(server.requests) == 1
    assert path == again == weight_path("codeformer", settings)
    assert path.read_bytes() == PAYLOAD
    assert events and events[-1].stage == "face_restore" and events[-1].detail["download"] == "codeformer"


def test_missing_weight_without_network_names_file_and_place(tmp_path):
    settings = make_settings(tmp_path)
    with pytest.raises(MissingWeightError) as info:
        ensure_weight("realesrgan-x2plus", settings, url=_closed_port_url())
    message = str(info.value)
    assert "RealESRGAN_x2plus.pth" in message
    assert str(weight_path("realesrgan-x2plus", settings)) in message and "UPSCALER_DIR" in message


def test_rife_downloads_from_vs_rife_releases_or_says_where_to_put_it(tmp_path):
    settings = make_settings(tmp_path)
    assert WEIGHTS["rife-4.25"].url == "https://github.com/HolyWu/vs-rife/releases/download/model/flownet_v4.25.pkl"
    assert WEIGHTS["rife-4.26"].url == "https://github.com/HolyWu/vs-rife/releases/download/model/flownet_v4.26.pkl"
    with pytest.raises(MissingWeightError) as info:
        ensure_weight("rife-4.25", settings, url=_closed_port_url())
    assert "flownet.pkl" in str(info.value) and "vs-rife" in str(info.value)
    assert str(settings.rife_dir) in str(info.value)


def test_rife_checksum_is_recorded_on_the_first_verified_download_and_enforced(tmp_path):
    import io
    import json

    import torch

    from backend.pipeline.rife_ifnet import IFNet
    from tests.helpers.postprocess import make_settings as fresh
    from tests.helpers.postprocess import rife_checkpoint_state

    torch.manual_seed(1)
    buf = io.BytesIO()
    torch.save(rife_checkpoint_state(IFNet()), buf)
    good = buf.getvalue()
    settings = make_settings(tmp_path)
    global PAYLOAD
    saved = PAYLOAD
    try:
        PAYLOAD = good
        with _Server(cut=1) as server:  # cut once: the second request resumes with a Range
            path = ensure_weight("rife-4.25", settings, url=server.url)
        assert path.read_bytes() == good and any("Range" in h for h in server.requests)
        book = json.loads((settings.rife_dir / ".studio-checksums.json").read_text())
        assert book["rife-4.25/flownet.pkl"]["sha256"] == hashlib.sha256(good).hexdigest()
        # The file is lost; the server now sends other bytes: the recorded checksum refuses them.
        path.unlink()
        PAYLOAD = good[:-8] + b"tampered"
        with _Server() as server, pytest.raises(MissingWeightError):
            ensure_weight("rife-4.25", settings, url=server.url)
        assert not path.exists()
        # Not a RIFE checkpoint at all: deleted, and one sentence says what it is not.
        other = fresh(tmp_path / "other")
        PAYLOAD = saved
        with _Server() as server, pytest.raises(MissingWeightError) as info:
            ensure_weight("rife-4.26", other, url=server.url)
        assert "not a RIFE checkpoint" in str(info.value)
        assert not (other.rife_dir / "rife-4.26" / "flownet.pkl").exists()
    finally:
        PAYLOAD = saved


def test_registry_entries_are_complete():
    for spec in WEIGHTS.values():
        assert spec.filename and spec.licence and spec.env and spec.source_note
        assert spec.sha256 is None or len(spec.sha256) == 64
        assert spec.url is None or spec.url.startswith("https://")


def test_an_unreachable_host_is_remembered_and_not_asked_again(tmp_path):
    url = _closed_port_url()
    port = int(url.split(":")[2].split("/")[0])
    with pytest.raises(DownloadError):
        download_file(url, tmp_path / "a.pth", SHA, timeout=5, unreachable_retry_s=60)
    # The host is back (something listens there now), but within the retry window nobody asks.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4)
    listener.settimeout(0.5)
    try:
        with pytest.raises(DownloadError) as info:
            download_file(url, tmp_path / "b.pth", SHA, timeout=5, unreachable_retry_s=60)
        assert "could not be reached" in str(info.value) and "tried again after 60 s" in str(info.value)
        with pytest.raises(socket.timeout):
            listener.accept()  # no connection was made
        # After the window it is tried again (here: it connects, and the silent listener times out).
        with pytest.raises(DownloadError):
            download_file(url, tmp_path / "c.pth", SHA, timeout=0.5, unreachable_retry_s=0)
        conn, _ = listener.accept()
        conn.close()
    finally:
        listener.close()
