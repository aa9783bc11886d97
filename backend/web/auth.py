"""Access control: one shared token guards every API route, WebSocket and stored file.

`install_auth(app, settings)` wraps the app in `AuthMiddleware`, a pure ASGI middleware, so the
same check covers routers, mounted static files and WebSockets alike (a FastAPI dependency would
miss mounts). The middleware is installed even when no token is set, because it also adds the
file-serving safety headers and rejects cross-site writes; only the token check depends on
`settings.token`.

A client proves it knows the token by one of:
- `Authorization: Bearer <token>` (scripts, curl),
- the `studio_session` cookie that `POST /api/login` sets (the page asks for the token once),
- for WebSockets only, a `token` query parameter (browsers cannot set headers on WebSockets).

Decisions the requirements left open:
- The HTML pages and their static assets stay open (`OPEN_PREFIXES`, `OPEN_PATHS`) so the page
  can load and ask for the token; they hold no job data. Everything else is closed by default,
  including FastAPI's /docs and /openapi.json, so a route added later is never open by accident.
- The cookie holds a random session id (`backend.web.sessions`), never the token: logout revokes it
  on the server, and changing the token ends every session.
- Failed attempts are counted per client address over a sliding window, for the login route,
  `GET /api/auth` and wrong bearer/query tokens alike, so no route bypasses the login limit. A
  client that is limited gets 429 for anything it sends, the right token included, until the
  window passes: otherwise the limit would only slow guessing down, not stop it.
- The address counted is the connecting one. X-Forwarded-For changes it only when it comes from
  STUDIO_TRUSTED_PROXIES: uvicorn run by hand believes that header from loopback, and any page
  open in a browser on this machine connects from loopback too.
- `?token=` is redacted from uvicorn's access and WebSocket log lines (`RedactTokens`).
- Every request must name, in `Host`, a host the studio is really served as (`HostPolicy`): a
  loopback name, an IP address, the configured STUDIO_HOST, STUDIO_ALLOWED_HOSTS, or the hosts of
  STUDIO_CORS_ORIGINS. This stops DNS rebinding: a page on a domain that its owner points at
  127.0.0.1 is same-origin with itself, so the Origin check alone would let it drive the studio.
  IP literals are safe to accept because a page can only be served from an IP address that is
  the studio itself. `X-Forwarded-Host` counts only from STUDIO_TRUSTED_PROXIES.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from backend.contracts.errors import StudioError
from backend.utils.config import Settings
from backend.utils.files import FILES_URL
from backend.web import error_responses as errors
from backend.web.sessions import SessionStore

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE_NAME = "studio_session"
COOKIE_MAX_AGE_S = 30 * 24 * 3600
SESSIONS_FILE = ".sessions.json"
WS_POLICY_VIOLATION = 1008

# Reachable without the token. Pages and their assets only: nothing here reveals jobs or files.
OPEN_PATHS = frozenset({"/", "/index.html", "/monitor", "/monitor/", "/favicon.ico", "/api/auth"})
OPEN_PREFIXES = ("/vendor/", "/assets/", "/js/")
# Open for any method: health checks (GET/HEAD) and the login/logout routes, which do their own
# checking and rate limiting.
HEALTH_PATH = "/api/health"
LOGIN_PATHS = frozenset({"/api/login", "/api/logout"})
FILES_PREFIX = f"{FILES_URL}/"

# What a stored upload or output may be served as. Anything else goes out as an opaque download,
# so a file that a browser would render as a page (HTML, SVG, XML) can never run script here.
SAFE_FILE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/gif", "video/mp4", "video/webm", "application/json"}
)

# A refusal: what the client is told (a catalogue code), and the headers that go with it.
Refusal = tuple[StudioError, list[tuple[bytes, bytes]]]


def tokens_equal(given: str, expected: str) -> bool:
    """Constant-time comparison; hashing first makes the time independent of the lengths too."""
    a = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    b = hashlib.sha256(expected.encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(a, b)


@dataclass
class FailureLimiter:
    """Counts failed attempts per client over a sliding window; `max_failures` in `window_s`
    blocks that client until its oldest failure leaves the window."""

    max_failures: int = 5
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    max_clients: int = 10_000
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, client: str) -> deque[float]:
        now = self.clock()
        hits = self._failures.get(client)
        if hits is None:
            return deque()
        while hits and now - hits[0] >= self.window_s:
            hits.popleft()
        if not hits:
            del self._failures[client]
        return hits

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it is not blocked."""
        hits = self._recent(client)
        if len(hits) < self.max_failures:
            return 0
        return max(1, int(hits[0] + self.window_s - self.clock() + 0.999))

    def record_failure(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= self.max_clients:
            # Bound memory under a flood of addresses: forget the stalest clients first.
            for stale in list(self._failures)[: self.max_clients // 10 or 1]:
                del self._failures[stale]
        self._recent(client)
        self._failures.setdefault(client, deque()).append(self.clock())

    def reset(self, client: str) -> None:
        self._failures.pop(client, None)


def split_host(value: str) -> str:
    """`Host`-header value → the bare lower-case host name or address, without the port."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostPolicy:
    """Which `Host` values the studio answers to, and whose X-Forwarded-Host it believes."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # ".example.com" matches a.example.com
    trusted_proxies: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        names = {"localhost"}
        suffixes = [".localhost"]  # browsers resolve these to loopback themselves
        configured = [settings.host, *settings.allowed_hosts.split(",")]
        configured += [urlsplit(o).netloc for o in parse_origins(settings.cors_origins) if o != "*"]
        for raw in configured:
            host = split_host(raw)
            if not host or host in ("0.0.0.0", "::"):
                continue
            if host.startswith("*."):
                suffixes.append(host[1:])
            elif host.startswith("."):
                suffixes.append(host)
            else:
                names.add(host)
        return cls(frozenset(names), tuple(suffixes), frozenset(settings.trusted_proxy_addresses))

    def allows(self, host: str) -> bool:
        return not host or _is_ip(host) or host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def request_host(self, scope: Scope) -> str:
        """The host the client asked for: `Host`, or X-Forwarded-Host from a trusted proxy."""
        headers = _headers(scope)
        forwarded = headers.get("x-forwarded-host")
        if forwarded and client_key(scope) in self.trusted_proxies:
            return split_host(forwarded.split(",")[0])
        return split_host(headers.get("host", ""))


class AuthGuard:
    """Everything the middleware and the login route share: the token, the limiter, the hosts."""

    def __init__(
        self,
        token: str,
        limiter: FailureLimiter,
        allowed_origins: frozenset[str],
        hosts: HostPolicy | None = None,
        sessions: SessionStore | None = None,
    ):
        self.token = token
        self.limiter = limiter
        self.allowed_origins = allowed_origins
        self.hosts = hosts or HostPolicy()
        self.sessions = sessions if sessions is not None else SessionStore(token, None, COOKIE_MAX_AGE_S)

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def check(self, candidate: str | None, *, is_cookie: bool = False) -> bool:
        if not self.enabled or not candidate:
            return False
        if is_cookie:
            return self.sessions.valid(candidate)
        return tokens_equal(candidate, self.token)

    def client(self, scope: Scope) -> str:
        """The address failed attempts are counted against."""
        return limit_key(scope, self.hosts.trusted_proxies)

    def limited(self, scope: Scope) -> Refusal | None:
        wait = self.limiter.retry_after(self.client(scope))
        if not wait:
            return None
        return StudioError("login_limited", s=wait), [(b"retry-after", str(wait).encode())]


# --------------------------------------------------------------------------------------------
# Request inspection helpers (raw ASGI scope, so they work for HTTP and WebSocket alike)


def _headers(scope: Scope) -> dict[str, str]:
    # Later duplicates win; the names we read are never legitimately repeated.
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out.setdefault(name.strip(), value.strip().strip('"'))
    return out


def client_key(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


UNTRUSTED_FORWARDED = "forwarded-by-untrusted-proxy"


def limit_key(scope: Scope, trusted_proxies: frozenset[str]) -> str:
    """The client address for per-client limits, never one chosen by an untrusted header.

    uvicorn's proxy_headers (on by default when uvicorn is run by hand) replaces the address with
    the X-Forwarded-For entry when the peer is loopback, so a local page could pick a fresh
    address for every request. With no trusted proxy configured, a request whose address is one
    of its own X-Forwarded-For entries is counted in one shared bucket instead.
    """
    address = client_key(scope)
    if trusted_proxies:
        return address
    forwarded = _headers(scope).get("x-forwarded-for")
    if forwarded and address in {entry.strip() for entry in forwarded.split(",")}:
        return UNTRUSTED_FORWARDED
    return address


@dataclass(frozen=True)
class Credentials:
    bearer: str | None
    cookie: str | None
    query: str | None

    @property
    def any(self) -> bool:
        return bool(self.bearer or self.cookie or self.query)


def credentials(scope: Scope) -> Credentials:
    headers = _headers(scope)
    bearer = None
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        bearer = value.strip()
    cookie = _cookies(headers.get("cookie", "")).get(COOKIE_NAME) or None
    query = None
    if scope["type"] == "websocket":
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        query = (qs.get("token") or [None])[0] or None
    return Credentials(bearer, cookie, query)


def _suspicious(path: str) -> bool:
    # Dot segments or empty segments could make an open prefix reach a closed route in some
    # router or file server; such paths are simply treated as closed.
    return "//" in path or "/./" in path or "/../" in path or path.endswith(("/..", "/."))


def _hidden(path: str) -> bool:
    # Dot names under /files/ are the studio's own bookkeeping (files in progress, sessions), never
    # a stored upload or output.
    return any(segment.startswith(".") for segment in path.split("/"))


def is_open(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    if scope["type"] != "http" or _suspicious(path):
        return False
    method = scope.get("method", "GET")
    if path == HEALTH_PATH or path in LOGIN_PATHS:
        return True
    if method not in ("GET", "HEAD"):
        return False
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _origin_allowed(scope: Scope, allowed: frozenset[str], hosts: HostPolicy) -> bool:
    """True when the request carries no Origin or comes from this very site (or an allowed one).

    Browsers send Origin on WebSockets and cross-site POSTs; checking it stops another web page
    from driving a studio that listens on loopback without a token (CSRF / WebSocket hijacking).
    """
    headers = _headers(scope)
    origin = headers.get("origin")
    if not origin:
        return True
    if origin in allowed or "*" in allowed:
        return True
    return split_host(urlsplit(origin).netloc) == hosts.request_host(scope)


# --------------------------------------------------------------------------------------------
# Responses


async def _send_error(send: Send, error: StudioError, extra: list[tuple[bytes, bytes]]) -> None:
    status = errors.status_for(error.code)
    payload = errors.encode(error)
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


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


# --------------------------------------------------------------------------------------------
# The middleware


class AuthMiddleware:
    def __init__(self, app: ASGIApp, guard: AuthGuard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        host = self.guard.hosts.request_host(scope)
        if not self.guard.hosts.allows(host):
            await self._deny(scope, receive, send, StudioError("bad_host", host=host[:100]))
            return

        if not _origin_allowed(scope, self.guard.allowed_origins, self.guard.hosts) and (
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
            if _hidden(scope.get("path", "")):
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
        else:
            await _send_error(send, error, extra or [])

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


# --------------------------------------------------------------------------------------------
# Login routes

router = APIRouter()


class LoginRequest(BaseModel):
    token: str = ""


def _guard(request: Request) -> AuthGuard:
    guard = getattr(request.app.state, "auth", None)
    if guard is None:  # install_auth was not called: behave as "no token configured"
        return AuthGuard("", FailureLimiter(), frozenset())
    return guard


def _is_https(request: Request) -> bool:
    # Behind ngrok/a proxy uvicorn's proxy_headers turns X-Forwarded-Proto into the scheme.
    return request.url.scheme in ("https", "wss")


def _limited_response(guard: AuthGuard, request: Request) -> JSONResponse | None:
    limited = guard.limited(request.scope)
    if limited is None:
        return None
    error, extra = limited
    return errors.response(error, headers={k.decode(): v.decode() for k, v in extra})


@router.get("/api/auth", response_model=dict[str, bool])
async def auth_status(request: Request):
    """Lets the page decide whether to ask for the token before calling anything else."""
    guard = _guard(request)
    if not guard.enabled:
        return {"required": False, "authenticated": True}
    refused = _limited_response(guard, request)
    if refused is not None:
        return refused
    cookie = request.cookies.get(COOKIE_NAME)
    bearer = credentials(request.scope).bearer
    authenticated = guard.check(bearer) or guard.check(cookie, is_cookie=True)
    if bearer and not guard.check(bearer):
        # This route is open, so it must count wrong tokens like every closed one does.
        guard.limiter.record_failure(guard.client(request.scope))
    return {"required": True, "authenticated": authenticated}


@router.post("/api/login")
async def login(body: LoginRequest, request: Request) -> JSONResponse:
    guard = _guard(request)
    if not guard.enabled:
        return JSONResponse({"required": False, "authenticated": True})
    client = guard.client(request.scope)
    refused = _limited_response(guard, request)
    if refused is not None:
        return refused
    if not guard.check(body.token.strip()):
        guard.limiter.record_failure(client)
        return errors.response(StudioError("token_wrong"))
    guard.limiter.reset(client)
    response = JSONResponse({"required": True, "authenticated": True})
    response.set_cookie(
        COOKIE_NAME,
        guard.sessions.create(),
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
        path="/",
    )
    return response


@router.post("/api/logout")
async def logout(request: Request) -> JSONResponse:
    guard = _guard(request)
    # Ends the session on the server too: a copy of the cookie kept anywhere stops working.
    guard.sessions.revoke(request.cookies.get(COOKIE_NAME))
    response = JSONResponse({"required": guard.enabled, "authenticated": False})
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response


# --------------------------------------------------------------------------------------------


def parse_origins(raw: str) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


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
    app.add_middleware(AuthMiddleware, guard=guard)
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


# --------------------------------------------------------------------------------------------
# Log redaction

_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)
# uvicorn writes HTTP request lines to uvicorn.access and WebSocket handshakes to uvicorn.error.
REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


def redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Rewrites `?token=...` in a log record's message and arguments (the WebSocket query token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) and "token=" in a.lower() else a for a in record.args)
        return True


def install_log_redaction() -> None:
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
