"""GET /api/system (one snapshot) and WS /ws/monitor (a sample about once a second).

One `MonitorHub` per app (kept on `app.state.monitor_hub`, made on first use) samples the machine
while at least one /monitor page is connected and fans each sample out to every page, so ten open
pages cost one NVML read per second, not ten. It keeps the last `monitor_history_s` of samples so a
page that opens (or reconnects) draws its charts at once. Tests put their own hub (with a fake NVML)
on `app.state.monitor_hub` before the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect

from backend.contracts.events import MonitorHistoryMessage, MonitorSampleMessage
from backend.utils.config import Settings
from backend.utils.gpu import SystemProbe

router = APIRouter()

# A page that has not taken this many samples is too slow; it is dropped and reconnects.
_QUEUE_SIZE = 8


class MonitorHub:
    def __init__(
        self,
        probe: SystemProbe,
        interval_s: float = 1.0,
        history_s: float = 600.0,
        cluster: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.probe = probe
        # Where transitions run (the Ray pool's workers, each with its GPU): added to each sample.
        self.cluster = cluster
        self.interval_s = interval_s
        self.history: deque[dict[str, Any]] = deque(maxlen=max(1, int(history_s / interval_s)))
        self._subscribers: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        # NVML and psutil are not thread-safe together with themselves; one read at a time.
        self._read_lock = asyncio.Lock()

    async def sample(self) -> dict[str, Any]:
        async with self._read_lock:
            # NVML calls block (tens of ms when the driver is busy): keep them off the event loop.
            sample = await asyncio.to_thread(self.probe.snapshot)
        if "cluster" not in sample:
            sample["cluster"] = _embedded() if self.cluster is None else self.cluster()
        return sample

    async def latest(self) -> dict[str, Any]:
        """The newest sample if the sampler took it moments ago, else a fresh one."""
        if self.history and time.time() - self.history[-1]["time"] < self.interval_s * 1.5:
            return self.history[-1]
        return await self.sample()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=_QUEUE_SIZE)
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="monitor-sampler")
        return queue

    async def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)
        if not self._subscribers and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self._subscribers:
            try:
                sample = await self.sample()
            except Exception as exc:  # the probe guards every read; this is the last resort
                sample = {"time": time.time(), "error": f"monitor read failed: {exc}"}
            self.history.append(sample)
            for queue in list(self._subscribers):
                try:
                    queue.put_nowait(sample)
                except asyncio.QueueFull:
                    # Too slow: a None tells its socket loop to close; it never holds the others up.
                    self._subscribers.discard(queue)
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                    queue.put_nowait(None)
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))


def _embedded() -> dict[str, Any]:
    return {"mode": "embedded", "address": None, "error": None, "workers": []}


def get_hub(app: Any) -> MonitorHub:
    hub = getattr(app.state, "monitor_hub", None)
    if hub is None:
        settings = getattr(app.state, "settings", None) or Settings()

        def cluster() -> dict[str, Any]:
            queue = getattr(app.state, "queue", None)
            return queue.cluster_view() if queue is not None else _embedded()

        hub = MonitorHub(SystemProbe(), settings.monitor_interval_s, settings.monitor_history_s, cluster)
        app.state.monitor_hub = hub
    return hub


@router.get("/api/system")
async def system_snapshot(request: Request) -> dict[str, Any]:
    """GPU(s), RAM, CPU now; every figure NVML cannot give is null, never an error status."""
    hub = get_hub(request.app)
    return {**(await hub.latest()), "interval_s": hub.interval_s}


@router.websocket("/ws/monitor")
async def monitor_socket(websocket: WebSocket) -> None:
    hub = get_hub(websocket.app)
    await websocket.accept()
    queue = hub.subscribe()
    receiver: asyncio.Task | None = None
    getter: asyncio.Task | None = None
    try:
        await websocket.send_json(
            MonitorHistoryMessage(interval_s=hub.interval_s, samples=list(hub.history)).model_dump(mode="json")
        )
        # Watch for the client closing while waiting for samples (it sends nothing otherwise).
        receiver = asyncio.create_task(websocket.receive())
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                message = receiver.result()
                if message.get("type") == "websocket.disconnect":
                    return
                receiver = asyncio.create_task(websocket.receive())
                continue
            sample = getter.result()
            if sample is None:
                await websocket.close(code=1013, reason="too slow; reconnect")
                return
            await websocket.send_json(MonitorSampleMessage(sample=sample).model_dump(mode="json"))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in (receiver, getter):
            if task is not None and not task.done():
                task.cancel()
        await hub.unsubscribe(queue)
