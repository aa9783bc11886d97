"""Bounds on request bodies: how large, how slow, and how many uploads at once.

`BodyLimits` is a pure ASGI middleware around the API. It
- refuses a body larger than its route allows (413), from Content-Length before reading anything
  and by counting bytes when the length is not declared;
- ends a body that pauses too long, arrives slower than a minimum average rate, or takes longer
  than a total limit (408), so a client sending a byte every few seconds cannot hold a
  connection, a file handle and an upload slot for as long as it likes;
- admits a bounded number of uploads at once, in all and per client address (503 / 429 at once,
  before any byte of the body is read), so slow or many uploads from one client leave room for
  everyone else.
A refused request gets `Connection: close`. One refused before its body is read (413 from the
declared length, 429, 503) is answered at once, then its body is read and dropped within a bound
(`refused_body_drain_s`, `refused_body_drain_mb`) before the answer is completed and the connection
closes: closing a socket with unread bytes sends a reset, and a client still writing its body would
meet the reset (a broken pipe, "connection reset") instead of reading the status.

Whatever the app answers once a limit has tripped (FastAPI turns a failed body read into a 400)
is replaced by the limit's own answer, so the client always learns which limit it hit.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.utils.config import Settings
from backend.web import error_responses as errors
from backend.web.request_info import ASGIApp, Message, Receive, Scope, Send, limit_key

UPLOAD_PATH = "/api/uploads"
# "Settings from a video": a video's start, read in memory (STUDIO_VIDEO_PROBE_MB).
VIDEO_PROBE_PATH = "/api/settings-from-video"
# Multipart framing around each file is small; this bounds an upload before any byte is parsed.
MULTIPART_OVERHEAD = 64 * 1024


class BodyLimitError(StudioError):
    def __init__(self, code: str, /, headers: list[tuple[bytes, bytes]] | None = None, **params: Any):
        super().__init__(code, **params)
        self.headers = headers or []


def upload_body_limit(settings: Settings) -> int:
    return settings.max_files_per_upload * (settings.max_upload_bytes + MULTIPART_OVERHEAD)


def _too_large(limit: int) -> BodyLimitError:
    return BodyLimitError("body_too_large", kb=limit // 1024)


def _upload_too_large(settings: Settings) -> BodyLimitError:
    return BodyLimitError(
        "upload_too_large", files=settings.max_files_per_upload, mb=messages.num(settings.max_upload_mb)
    )


class _TimedBody:
    """Wraps `receive` for one request: counts bytes and enforces the time limits while the body
    is being read; after the last chunk it passes messages (the disconnect) straight through."""

    def __init__(self, receive: Receive, settings: Settings, limit: int, too_large: BodyLimitError):
        self._receive = receive
        self._limit = limit
        self._too_large = too_large
        self._idle_s = settings.body_idle_timeout_s
        self._min_rate = settings.body_min_rate_kb_s * 1024
        self._max_s = settings.body_max_s
        self._start = self._last = time.monotonic()
        self.received = 0
        self.done = False
        self.tripped: BodyLimitError | None = None

    def _deadline(self) -> float:
        # The moment this body falls behind: a pause longer than the idle limit, the total limit,
        # or (after the first idle period of grace) an average rate below the minimum.
        rate_deadline = (
            self._start + max(self._idle_s, self.received / self._min_rate) if self._min_rate > 0 else float("inf")
        )
        return min(self._last + self._idle_s, self._start + self._max_s, rate_deadline)

    def _trip(self, error: BodyLimitError) -> BodyLimitError:
        self.tripped = error
        return error

    async def __call__(self) -> Message:
        if self.done:
            return await self._receive()
        if self.tripped is not None:
            raise self.tripped
        remaining = self._deadline() - time.monotonic()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(self._receive(), remaining)
        except asyncio.TimeoutError:
            raise self._trip(
                BodyLimitError(
                    "body_too_slow",
                    rate_kb_s=messages.num(self._min_rate / 1024),
                    idle_s=messages.num(self._idle_s),
                    max_s=messages.num(self._max_s),
                )
            ) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self._last = time.monotonic()
            if self.received > self._limit:
                raise self._trip(self._too_large)
            if not message.get("more_body", False):
                self.done = True
        else:
            self.done = True
        return message


class UploadSlots:
    """Uploads in flight, in all and per client; acquiring never waits."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._by_client: Counter[str] = Counter()

    @property
    def in_flight(self) -> int:
        return sum(self._by_client.values())

    def acquire(self, client: str) -> BodyLimitError | None:
        if self._by_client[client] >= self.per_client:
            return BodyLimitError("uploads_per_client", [(b"retry-after", b"2")], limit=self.per_client)
        if self.in_flight >= self.total:
            return BodyLimitError("uploads_busy", [(b"retry-after", b"5")])
        self._by_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]


async def drain(receive: Receive, declared: int | None, max_bytes: int, max_s: float) -> None:
    """Reads and drops a refused request's body, within `max_bytes` and `max_s`; a body declared
    larger than `max_bytes` is not read at all (it would be cut off anyway). `receive` is paced
    (`_TimedBody`): a body that arrives too slowly ends the drain as it would end an upload."""
    if max_s <= 0 or max_bytes <= 0 or (declared is not None and declared > max_bytes):
        return
    deadline = time.monotonic() + max_s
    received = 0
    while received <= max_bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except (asyncio.TimeoutError, BodyLimitError):
            return
        if message["type"] != "http.request":
            return  # the client went away
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def send_error(send: Send, error: BodyLimitError, receive: Receive | None = None, **drain_bounds: Any) -> None:
    """The refusal, with `Connection: close`. Given `receive`, the answer goes out at once and the
    unread body is drained (`drain`) before the answer is completed and the connection closes."""
    payload = errors.encode(error)
    await send(
        {
            "type": "http.response.start",
            "status": errors.status_for(error.code),
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
                *error.headers,
            ],
        }
    )
    if receive is None:
        await send({"type": "http.response.body", "body": payload})
        return
    # The whole answer is written now (its Content-Length is known); the server closes the
    # connection once the empty last part is sent, after the drain.
    await send({"type": "http.response.body", "body": payload, "more_body": True})
    await drain(receive, **drain_bounds)
    await send({"type": "http.response.body", "body": b""})


class BodyLimits:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.json_limit = settings.max_json_body_kb * 1024
        self.upload_limit = upload_body_limit(settings)
        self.slots = UploadSlots(settings.max_uploads_in_flight, settings.max_uploads_per_client)
        self.trusted = frozenset(settings.trusted_proxy_addresses)
        self.drain_s = settings.refused_body_drain_s
        self.drain_bytes = int(settings.refused_body_drain_mb * 1024 * 1024)

    async def _refuse(self, send: Send, receive: Receive, error: BodyLimitError, declared: int | None) -> None:
        paced = _TimedBody(receive, self.settings, self.drain_bytes, error)
        await send_error(send, error, paced, declared=declared, max_bytes=self.drain_bytes, max_s=self.drain_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        is_upload = scope.get("path") == UPLOAD_PATH
        is_video = scope.get("path") == VIDEO_PROBE_PATH
        limit = self.upload_limit if is_upload else self.json_limit
        too_large = _upload_too_large(self.settings) if is_upload else _too_large(limit)
        if is_video:
            limit = self.settings.video_probe_bytes + MULTIPART_OVERHEAD
            too_large = BodyLimitError("video_probe_too_large", mb=messages.num(self.settings.video_probe_mb))
        length = declared_length(scope)
        if length is not None and length > limit:
            await self._refuse(send, receive, too_large, length)
            return
        client = limit_key(scope, self.trusted)
        if is_upload:
            refused = self.slots.acquire(client)
            if refused is not None:
                await self._refuse(send, receive, refused, length)
                return
        try:
            await self._run(scope, _TimedBody(receive, self.settings, limit, too_large), send)
        finally:
            if is_upload:
                self.slots.release(client)

    async def _run(self, scope: Scope, body: _TimedBody, send: Send) -> None:
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if body.tripped is not None:
                return  # the app's own answer to the failed read; ours goes out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, body, guarded_send)
        except Exception:
            if body.tripped is None:
                raise
        if body.tripped is not None and not started:
            await send_error(send, body.tripped)


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def install_body_limits(app: Any, settings: Settings) -> None:
    """Adds `BodyLimits` to `app`; install it before the auth middleware so it runs after the
    token check (a client without the token never takes an upload slot)."""
    app.add_middleware(BodyLimits, settings=settings)
