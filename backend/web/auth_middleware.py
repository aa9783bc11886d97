"""One shared token guards every API route, WebSocket and stored file.

`install_auth(app, settings)` wraps the app in `AuthMiddleware`, a pure ASGI middleware, so the
same check covers routers, mounted static files and WebSockets alike (a FastAPI dependency would
miss mounts). The middleware is installed even when no token is set, because it also adds the
file-serving safety headers and rejects cross-site writes; only the token check depends on
`settings.token`.

A client proves it knows the token by one of (`backend.web.request_info.credentials`):
- `Authorization: Bearer <token>` (scripts, curl),
- the `studio_session` cookie that `POST /api/login` sets (the page asks for the token once),
- for WebSockets only, a `token` query parameter, which `backend.web.log_redaction` keeps out of
  uvicorn's log lines.
What is open without it is `backend.web.request_info.is_open`; who may try, and from which host
and origin, is `backend.web.access_policy`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from backend.contracts.errors import StudioError
from backend.utils.config import Settings
from backend.web import error_responses as errors
from backend.web.access_policy import (
    COOKIE_MAX_AGE_S,
    AuthGuard,
    FailureLimiter,
    HostPolicy,
    Refusal,
    origin_allowed,
    parse_origins,
)
from backend.web.body_limits import declared_length, drain
from backend.web.log_redaction import install_log_redaction
from backend.web.request_info import (
    FILES_PREFIX,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    credentials,
    is_hidden,
    is_open,
)
from backend.web.sessions import SessionStore

SESSIONS_FILE = ".sessions.json"
WS_POLICY_VIOLATION = 1008

# What a stored upload or output may be served as. Anything else goes out as an opaque download,
# so a file that a browser would render as a page (HTML, SVG, XML) can never run script here.
SAFE_FILE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "video/webm", "application/json"}
)


async def _send_error(
    send: Send, error: StudioError, extra: list[tuple[bytes, bytes]], body: DrainBounds | None = None
) -> None:
    """The refusal. Given `body` (a request that may still be sending one, e.g. an upload without
    its token), the answer goes out at once with `Connection: close` and the unread body is drained
    within the same bounds as the body limits' refusals, so the client reads 401/403/429 instead of
    a reset."""
    status = errors.status_for(error.code)
    payload = errors.encode(error)
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    if body is None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": True})
    await drain(body.receive, declared=body.declared, max_bytes=body.max_bytes, max_s=body.max_s)
    await send({"type": "http.response.body", "body": b""})


@dataclass(frozen=True)
class DrainBounds:
    receive: Receive
    declared: int | None
    max_bytes: int
    max_s: float


async def _close_websocket(receive: Receive, send: Send, error: StudioError) -> None:
    # Accept first, then close with 1008: a handshake refused before accept reaches the browser
    # only as a generic failure (HTTP 403), while a close frame carries the code the page checks.
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    # Close reasons are limited to 123 bytes; the English sentence is what fits.
    short = error.text("en").encode()[:120].decode(errors="ignore")
    await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": short})


def _file_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers for a stored upload/output: never sniffed, never rendered as a page."""
    out = []
    content_type = ""
    for name, value in headers:
        lname = name.lower()
        if lname == b"content-type":
            content_type = value.decode("latin-1").split(";")[0].strip().lower()
            continue
        if lname in (b"x-content-type-options", b"content-security-policy", b"content-disposition"):
            continue
        out.append((name, value))
    if content_type in SAFE_FILE_TYPES:
        out.append((b"content-type", content_type.encode()))
    else:
        out.append((b"content-type", b"application/octet-stream"))
        out.append((b"content-disposition", b"attachment"))
    out.append((b"x-content-type-options", b"nosniff"))
    out.append((b"content-security-policy", b"default-src 'none'; sandbox"))
    return out


class AuthMiddleware:
    def __init__(self, app: ASGIApp, guard: AuthGuard, drain_s: float = 0.0, drain_mb: float = 0.0):
        self.app = app
        self.guard = guard
        self.drain_s = drain_s
        self.drain_bytes = int(drain_mb * 1024 * 1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        host = self.guard.hosts.request_host(scope)
        if not self.guard.hosts.allows(host):
            await self._deny(scope, receive, send, StudioError("bad_host", host=host[:100]))
            return

        if not origin_allowed(scope, self.guard.allowed_origins, self.guard.hosts) and (
            kind == "websocket" or scope.get("method") not in ("GET", "HEAD", "OPTIONS")
        ):
            await self._deny(scope, receive, send, StudioError("cross_site"))
            return

        if self.guard.enabled and not is_open(scope):
            verdict = self._verdict(scope)
            if verdict is not None:
                error, extra = verdict
                await self._deny(scope, receive, send, error, extra)
                return

        if kind == "http" and scope.get("path", "").startswith(FILES_PREFIX):
            if is_hidden(scope.get("path", "")):
                await _send_error(send, StudioError("file_not_found"), [])
                return
            await self.app(scope, receive, self._file_sender(send))
        else:
            await self.app(scope, receive, self._nosniff_sender(send) if kind == "http" else send)

    def _verdict(self, scope: Scope) -> Refusal | None:
        """None when the request carries a valid token, else the refusal to send."""
        # Checked before the token: a limited client must not learn that a guess was right.
        limited = self.guard.limited(scope)
        if limited is not None:
            return limited
        creds = credentials(scope)
        if (
            (creds.bearer and self.guard.check(creds.bearer))
            or (creds.query and self.guard.check(creds.query))
            or (creds.cookie and self.guard.check(creds.cookie, is_cookie=True))
        ):
            return None
        challenge = [(b"www-authenticate", b'Bearer realm="studio"')]
        if not creds.any:
            return StudioError("token_missing"), challenge
        # A stale cookie alone is not a guess (logged out, or the token changed); a wrong
        # explicit token is.
        if creds.bearer or creds.query:
            self.guard.limiter.record_failure(self.guard.client(scope))
        return StudioError("token_wrong"), challenge

    async def _deny(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        error: StudioError,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if scope["type"] == "websocket":
            await _close_websocket(receive, send, error)
        elif scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await _send_error(send, error, extra or [])
        else:
            bounds = DrainBounds(receive, declared_length(scope), self.drain_bytes, self.drain_s)
            await _send_error(send, error, extra or [], bounds)

    @staticmethod
    def _nosniff_sender(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-content-type-options"]
                headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    @staticmethod
    def _file_sender(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _file_headers(list(message.get("headers", [])))}
            await send(message)

        return wrapped


def install_auth(app: FastAPI, settings: Settings) -> None:
    """Adds the token check to every route, file and WebSocket of `app`.

    CORS stays closed (no CORS headers at all) unless `STUDIO_CORS_ORIGINS` names origins.
    """
    origins = parse_origins(settings.cors_origins)
    limiter = FailureLimiter(max_failures=settings.login_max_failures, window_s=settings.login_window_s)
    token = settings.token.strip()
    sessions = SessionStore(token, settings.data_dir / SESSIONS_FILE, COOKIE_MAX_AGE_S) if token else None
    guard = AuthGuard(token, limiter, origins, HostPolicy.from_settings(settings), sessions)
    app.state.auth = guard
    install_log_redaction()
    app.add_middleware(
        AuthMiddleware,
        guard=guard,
        drain_s=settings.refused_body_drain_s,
        drain_mb=settings.refused_body_drain_mb,
    )
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        # Added last, so it runs first: preflight requests carry no credentials by design.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(origins),
            allow_credentials="*" not in origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
