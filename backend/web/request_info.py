"""What a raw ASGI request says about itself: its headers, its client address, the credentials it
carries and whether its path is one of the open ones.

These read the raw scope, not a Starlette `Request`, so the same code serves the middlewares and
the routes, HTTP and WebSocket alike.

The HTML pages and their static assets stay open (`OPEN_PREFIXES`, `OPEN_PATHS`) so the page can
load and ask for the token; they hold no job data. Everything else is closed by default, including
FastAPI's /docs and /openapi.json, so a route added later is never open by accident.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from backend.utils.files import FILES_URL

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE_NAME = "studio_session"

# Reachable without the token. Pages and their assets only: nothing here reveals jobs or files.
OPEN_PATHS = frozenset({"/", "/index.html", "/monitor", "/monitor/", "/favicon.ico", "/api/auth"})
OPEN_PREFIXES = ("/vendor/", "/assets/", "/js/")
# Open for any method: health checks (GET/HEAD) and the login/logout routes, which do their own
# checking and rate limiting.
HEALTH_PATH = "/api/health"
LOGIN_PATHS = frozenset({"/api/login", "/api/logout"})
FILES_PREFIX = f"{FILES_URL}/"

UNTRUSTED_FORWARDED = "forwarded-by-untrusted-proxy"


def header_map(scope: Scope) -> dict[str, str]:
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
    forwarded = header_map(scope).get("x-forwarded-for")
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
    """The token or session a request offers: `Authorization: Bearer`, the session cookie, or, for
    WebSockets only, a `token` query parameter (browsers cannot set headers on WebSockets)."""
    headers = header_map(scope)
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


def is_hidden(path: str) -> bool:
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
