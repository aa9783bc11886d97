"""Who may use the studio: the token comparison, the failed-attempt limiter, the hosts and origins
the studio answers to, and `AuthGuard`, which holds them for the middleware and the login routes.

Decisions the requirements left open:
- The cookie holds a random session id (`backend.web.sessions`), never the token: logout revokes it
  on the server, and changing the token ends every session.
- Failed attempts are counted per client address over a sliding window, for the login route,
  `GET /api/auth` and wrong bearer/query tokens alike, so no route bypasses the login limit. A
  client that is limited gets 429 for anything it sends, the right token included, until the
  window passes: otherwise the limit would only slow guessing down, not stop it.
- The address counted is the connecting one. X-Forwarded-For changes it only when it comes from
  STUDIO_TRUSTED_PROXIES: uvicorn run by hand believes that header from loopback, and any page
  open in a browser on this machine connects from loopback too.
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
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from backend.contracts.errors import StudioError
from backend.utils.config import Settings
from backend.web.request_info import Scope, client_key, header_map, limit_key
from backend.web.sessions import SessionStore

COOKIE_MAX_AGE_S = 30 * 24 * 3600

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


def parse_origins(raw: str) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


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
        headers = header_map(scope)
        forwarded = headers.get("x-forwarded-host")
        if forwarded and client_key(scope) in self.trusted_proxies:
            return split_host(forwarded.split(",")[0])
        return split_host(headers.get("host", ""))


def origin_allowed(scope: Scope, allowed: frozenset[str], hosts: HostPolicy) -> bool:
    """True when the request carries no Origin or comes from this very site (or an allowed one).

    Browsers send Origin on WebSockets and cross-site POSTs; checking it stops another web page
    from driving a studio that listens on loopback without a token (CSRF / WebSocket hijacking).
    """
    origin = header_map(scope).get("origin")
    if not origin:
        return True
    if origin in allowed or "*" in allowed:
        return True
    return split_host(urlsplit(origin).netloc) == hosts.request_host(scope)


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
