"""Fan-out of job events to WebSocket clients.

Each client has its own bounded queue and its own sender task, so `publish` never awaits a socket:
one slow or dead client fills only its own queue, is then dropped (it reconnects and gets a fresh
snapshot), and never delays the others. `publish` must run on the event loop; threads use
`publish_threadsafe`.

Messages are the typed ones of `backend.contracts.events`, encoded once per publish, whatever the number of
clients. A plain dict is sent as it is (with `ts` added): the fan-out does not judge content.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from backend.contracts.events import SnapshotMessage
from backend.contracts.models import JobView

log = logging.getLogger(__name__)

# A client more than this many events behind is too slow to keep.
CLIENT_QUEUE_SIZE = 1000


class _Client:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE_SIZE)
        self.sender: asyncio.Task | None = None


def encode(message: BaseModel | dict[str, Any]) -> str:
    if isinstance(message, BaseModel):
        return json.dumps(message.model_dump(mode="json"), separators=(",", ":"))
    message.setdefault("ts", time.time())
    return json.dumps(message, separators=(",", ":"))


class WebSocketManager:
    def __init__(self, snapshot: Callable[[], Iterable[JobView]]) -> None:
        self._snapshot = snapshot
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: BaseModel | dict[str, Any]) -> None:
        if not self._clients:
            return
        message = encode(event)
        for client in list(self._clients):
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                log.warning("dropping a WebSocket client that fell %d events behind", CLIENT_QUEUE_SIZE)
                self._drop(client)

    def publish_threadsafe(self, event: BaseModel | dict[str, Any]) -> None:
        # Stamped on the worker's side (a model when it was made), so clients can measure
        # worker → client latency.
        if isinstance(event, dict):
            event.setdefault("ts", time.time())
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.publish, event)

    def _drop(self, client: _Client) -> None:
        self._clients.discard(client)
        # Its sender may be stuck in a send that never completes (a client that stopped reading):
        # cancel it and close the socket, bounded in time, so the connection ends.
        if client.sender is not None:
            client.sender.cancel()
        asyncio.ensure_future(self._close(client.ws, 1013))

    @staticmethod
    async def _close(ws: WebSocket, code: int) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code=code), timeout=2)

    async def serve(self, ws: WebSocket) -> None:
        """Runs one client's connection until it closes."""
        await ws.accept()
        client = _Client(ws)
        # Snapshot and registration happen with no await in between, so no event falls in a gap.
        client.queue.put_nowait(encode(SnapshotMessage(jobs=list(self._snapshot()))))
        self._clients.add(client)
        sender = client.sender = asyncio.create_task(self._send_loop(client))
        try:
            while True:
                # Clients send nothing we act on; reading notices a closed socket. Raw messages,
                # so a binary frame is ignored like a text one (receive_text fails on it).
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self._clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _send_loop(self, client: _Client) -> None:
        try:
            while True:
                await client.ws.send_text(await client.queue.get())
        except Exception:  # a broken socket: the receive loop ends the connection
            self._clients.discard(client)
            with contextlib.suppress(Exception):
                await client.ws.close()

    async def close_all(self) -> None:
        clients = list(self._clients)
        for client in clients:
            self._drop(client)
        await asyncio.gather(*(self._close(c.ws, 1001) for c in clients))
