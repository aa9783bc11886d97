"""Connection limits below ASGI: how long a request head may take, and how many connections one
address may hold open.

uvicorn times out idle keep-alive connections and (through `body_limits`) the app ends slow bodies,
but nothing bounds the time a client takes to send a request *head*: a connection sending one byte
every few seconds is never handed to the app and is held for ever, and a few hundred of them use
up the process's file descriptors, locking every client out. Both checks need the socket, before
any ASGI scope exists, so they live in uvicorn's HTTP protocol: `GuardedHttpTools` and `GuardedH11`
add to uvicorn's own protocols
- a head timer: armed when a connection opens and again after each answer (for the next request on a
  kept-alive connection); a head that is not complete (headers parsed) when it fires gets a 408
  with the catalogue body and the connection is closed;
- a cap on open connections per client address: a connection beyond it gets a 429 at once and is
  closed. Trusted proxies (`STUDIO_TRUSTED_PROXIES`, the tunnel agent) are exempt: every client of
  the tunnel arrives from there.
A connection upgraded to a WebSocket leaves both (its head is complete; uvicorn hands the socket
to the WebSocket protocol).

`python -m backend` (and so Docker and Colab) runs with `protocol_class(settings)`. uvicorn chooses
its protocol before it imports the app, so `uvicorn backend.app:app` gets the guard only when told:
`--http backend.web.connections:GuardedHttpTools` (or `:GuardedH11`), which read `Settings()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any
from weakref import WeakKeyDictionary

from uvicorn.protocols.http.h11_impl import H11Protocol

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.utils.config import Settings
from backend.web import error_responses as errors

log = logging.getLogger(__name__)

# Open connections per address, per uvicorn server (its `server_state` is shared by the protocols
# of one server; weak, so a stopped server takes its counts with it).
_OPEN: WeakKeyDictionary[Any, Counter[str]] = WeakKeyDictionary()


def _answer(error: StudioError, extra: list[tuple[str, str]] = ()) -> bytes:
    payload = errors.encode(error)
    status = errors.status_for(error.code)
    reason = {408: "Request Timeout", 429: "Too Many Requests"}.get(status, "Error")
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json; charset=utf-8",
        f"content-length: {len(payload)}",
        "connection: close",
        *(f"{k}: {v}" for k, v in extra),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


class _Guard:
    """Mixed into a uvicorn HTTP protocol class (first in the bases)."""

    studio_settings: Settings | None = None

    @classmethod
    def _settings(cls) -> Settings:
        if cls.studio_settings is None:  # started as `uvicorn --http backend.web.connections:...`
            cls.studio_settings = Settings()
        return cls.studio_settings

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        settings = self._settings()
        self._head_timer: asyncio.TimerHandle | None = None
        self._armed_for: object = None
        self._address: str | None = None
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        cap = settings.max_connections_per_address
        if address is not None and cap > 0 and address not in settings.trusted_proxy_addresses:
            counts = _OPEN.setdefault(self.server_state, Counter())  # type: ignore[attr-defined]
            if counts[address] >= cap:
                log.warning("refused a connection from %s: %d already open", address, counts[address])
                transport.write(_answer(StudioError("connections_per_address", limit=cap), [("retry-after", "5")]))
                transport.close()
                return
            counts[address] += 1
            self._address = address
        self._arm_head_timer()

    # --- the head timer -----------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        timeout = self._settings().header_timeout_s
        if timeout <= 0:
            return
        self._cancel_head_timer()
        self._armed_for = self.cycle  # type: ignore[attr-defined]
        self._head_timer = self.loop.call_later(timeout, self._head_too_slow)  # type: ignore[attr-defined]

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        transport = self.transport  # type: ignore[attr-defined]
        if transport.is_closing():
            return
        timeout = self._settings().header_timeout_s
        log.info("closed a connection from %s: no complete request head in %s s", self._address, timeout)
        transport.write(_answer(StudioError("header_too_slow", s=messages.num(timeout))))
        transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        # A new request cycle exists once a head is parsed: the head arrived in time.
        if self._head_timer is not None and self.cycle is not self._armed_for:  # type: ignore[attr-defined]
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        transport = self.transport  # type: ignore[attr-defined]
        if not transport.is_closing() and not getattr(self, "pipeline", None):
            self._arm_head_timer()  # the next request on this kept-alive connection

    # --- leaving ------------------------------------------------------------------------------
    def _release(self) -> None:
        self._cancel_head_timer()
        address, self._address = getattr(self, "_address", None), None
        if address is None:
            return
        counts = _OPEN.get(self.server_state)  # type: ignore[attr-defined]
        if counts is not None:
            counts[address] -= 1
            if counts[address] <= 0:
                del counts[address]

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._release()
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)  # type: ignore[misc]


class GuardedH11(_Guard, H11Protocol):
    """uvicorn's h11 protocol with the head timer and the per-address cap."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional for uvicorn; h11 always comes with it
    GuardedHttpTools = GuardedH11
else:

    class GuardedHttpTools(_Guard, HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's httptools protocol (its default when httptools is installed), guarded."""


def protocol_class(settings: Settings) -> type:
    """The guarded protocol uvicorn's "auto" would pick (httptools when installed), bound to
    `settings`."""
    return type(GuardedHttpTools.__name__, (GuardedHttpTools,), {"studio_settings": settings})
