"""Resumable HTTP download of one file, verified by sha256 before it gets its final name.

Used for post-processing weights on first use and by the setup script. The file is written to
`<dest>.part`; an interrupted download resumes from there with an HTTP Range request; the final
name appears only after the size and checksum match, so a reader never sees half a file under
the real name. Standard library only (urllib) besides the studio's error contract, which imports
nothing else, so the setup script can run it before the heavy packages are installed.

A host that cannot be reached (refused, no route, name not found, connect timeout) is remembered
for `unreachable_retry_s`: until then a download from it fails at once instead of every job
waiting out its own timeout. Every connect and read is bounded by `timeout`, and a broken
transfer is resumed at most `retries` times.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backend.contracts.errors import StudioError

_BLOCK = 1 << 20  # 1 MiB reads: few syscalls, progress about every MiB.


@dataclass(frozen=True)
class DownloadProgress:
    url: str
    dest: Path
    done: int  # bytes on disk so far
    total: int | None  # None when the server does not say and the caller did not either

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


DownloadCallback = Callable[[DownloadProgress], None]


class DownloadError(StudioError, RuntimeError):
    """The file could not be fetched or verified; the message says which file and why."""


class ChecksumMismatch(DownloadError):
    """The bytes arrived but their size or sha256 is not the expected one."""


UNREACHABLE_RETRY_S = 120.0
_unreachable: dict[str, tuple[float, str]] = {}  # host -> (when, why)
_unreachable_lock = threading.Lock()


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _remembered_failure(url: str, retry_s: float) -> DownloadError | None:
    with _unreachable_lock:
        seen = _unreachable.get(_host(url))
    if seen is None or time.monotonic() - seen[0] >= retry_s:
        return None
    ago = time.monotonic() - seen[0]
    return DownloadError(
        "download_unreachable", url=url, host=_host(url), ago=f"{ago:.0f}", why=seen[1], retry=f"{retry_s:.0f}"
    )


def _remember(url: str, why: str | None) -> None:
    with _unreachable_lock:
        if why is None:
            _unreachable.pop(_host(url), None)
        else:
            _unreachable[_host(url)] = (time.monotonic(), why)


def host_unreachable(url: str, timeout: float = 3.0, retry_s: float = UNREACHABLE_RETRY_S) -> str | None:
    """Why `url`'s host cannot be reached (None when a TCP connection opens). One connect of at
    most `timeout`; a failure is remembered for `retry_s`, like a failed download."""
    import socket

    remembered = _remembered_failure(url, retry_s)
    if remembered:
        return remembered.text("en")
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), timeout=timeout
        ):
            pass
    except OSError as exc:
        why = str(exc) or type(exc).__name__
        _remember(url, why)
        return f"{_host(url)} could not be reached ({why})"
    _remember(url, None)
    return None


def forget_unreachable() -> None:
    """Clears the memory of unreachable hosts (the network came back, or a test starts)."""
    with _unreachable_lock:
        _unreachable.clear()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _verify(path: Path, sha256: str | None, size: int | None, url: str) -> None:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumMismatch("download_size_mismatch", url=url, size=actual_size, expected=size)
    if sha256:
        actual = sha256_of(path)
        if actual.lower() != sha256.lower():
            raise ChecksumMismatch("download_checksum_mismatch", url=url, actual=actual, expected=sha256)


def download_file(
    url: str,
    dest: Path,
    sha256: str | None,
    size: int | None = None,
    progress: DownloadCallback | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    unreachable_retry_s: float = UNREACHABLE_RETRY_S,
) -> Path:
    """Fetches `url` into `dest` and returns `dest`.

    An existing `dest` that verifies is returned without network use. `timeout` bounds every
    connect and every read, so a dead network fails within it instead of hanging. A connection
    that breaks mid-body is resumed (up to `retries` times) from the bytes already in `.part`.
    On a checksum or size mismatch the partial file is deleted and `ChecksumMismatch` raised.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        try:
            _verify(dest, sha256, size, url)
            return dest
        except ChecksumMismatch:
            dest.unlink()  # a stale or corrupt copy: fetch it again

    remembered = _remembered_failure(url, unreachable_retry_s)
    if remembered:
        raise remembered
    part = _part_path(dest)
    attempts = 0
    while True:
        try:
            _fetch_into(url, part, size, progress, headers or {}, timeout)
            _remember(url, None)
            break
        except urllib.error.HTTPError as exc:
            if exc.code not in (408, 429, 500, 502, 503, 504) or attempts >= retries:
                raise DownloadError("download_http_error", url=url, status=exc.code, reason=str(exc.reason)) from exc
            attempts += 1
        except (urllib.error.URLError, OSError, http.client.HTTPException, _ShortRead) as exc:
            # Resume only after a connection that delivered bytes; an unreachable host (no
            # network, refused) fails at once so a job never waits on it.
            got_bytes = part.exists() and part.stat().st_size > 0
            if not got_bytes and isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError)):
                _remember(url, str(getattr(exc, "reason", exc)))
            if attempts >= retries or not got_bytes:
                raise DownloadError("download_failed", url=url, reason=str(getattr(exc, "reason", exc))) from exc
            attempts += 1

    try:
        _verify(part, sha256, size, url)
    except ChecksumMismatch:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)  # atomic on one filesystem
    return dest


class _ShortRead(Exception):
    """The server closed the body before Content-Length bytes arrived."""


def _fetch_into(
    url: str,
    part: Path,
    size: int | None,
    progress: DownloadCallback | None,
    headers: dict[str, str],
    timeout: float,
) -> None:
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return  # a previous run got every byte; only verification is left
    request_headers = {"User-Agent": "framepack-studio", **headers}
    if have:
        request_headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=request_headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Range beyond the end: what we hold is the whole file (or garbage); verify decides.
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range: start over rather than append a second copy
        length = response.headers.get("Content-Length")
        expected_body = int(length) if length is not None else None
        total = size if size is not None else (have + expected_body if expected_body is not None else None)
        received = 0
        with open(part, "ab" if have else "wb") as out:
            while True:
                block = response.read(_BLOCK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                if progress is not None:
                    progress(DownloadProgress(url, part, have + received, total))
        if expected_body is not None and received < expected_body:
            raise _ShortRead(f"connection closed after {have + received} bytes")
