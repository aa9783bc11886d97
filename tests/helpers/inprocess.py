"""The studio's job side inside the test process: no server, the morph engine, a temporary SQLite
store, and a WebSocket client on the real fan-out (the bytes it gets are the bytes a page gets)."""

from __future__ import annotations

import asyncio
import json
import time

from backend.contracts.models import JobCreate, JobSettings
from backend.jobs.fanout import WebSocketManager
from backend.jobs.params import Suggestions
from backend.jobs.queue import JobQueue
from backend.jobs.store import Store
from backend.pipeline.engines import Engines
from backend.utils.config import Settings
from tests.helpers.images import save, scene


class _Socket:
    """A page's end of /ws: keeps every text frame the manager sends, as sent."""

    def __init__(self) -> None:
        self.raw: list[str] = []
        self._closed = asyncio.Event()

    async def accept(self) -> None:
        pass

    async def send_text(self, text: str) -> None:
        self.raw.append(text)

    async def receive(self) -> dict:
        await self._closed.wait()
        return {"type": "websocket.disconnect"}

    async def close(self, code: int = 1000) -> None:
        self._closed.set()

    @property
    def messages(self) -> list[dict]:
        return [json.loads(text) for text in self.raw]


class Studio:
    """One start of the studio's job side on a data folder: store, engines, fan-out, queue."""

    def __init__(self, settings: Settings, suggest=None, workers=None) -> None:
        self.settings = settings
        self.store = Store(settings.database_path)
        self.ws = WebSocketManager(snapshot=lambda: self.queue.snapshot())
        self.ws.bind_loop(asyncio.get_running_loop())
        engines = Engines(settings)
        self.queue = JobQueue(
            settings,
            self.store,
            self.ws,
            engines,
            suggest=suggest,
            workers=workers(settings, engines) if workers else None,
        )
        self.socket = _Socket()
        self._client: asyncio.Task | None = None

    async def start(self) -> Studio:
        await self.queue.start()
        self._client = asyncio.create_task(self.ws.serve(self.socket))
        await self.until(lambda: self.socket.raw)  # the snapshot
        return self

    async def stop(self) -> None:
        await self.queue.stop()
        await self.socket.close()
        await self._client
        await self.ws.close_all()
        self.store.close()

    def events(self, job_id: str, kind: str | None = None) -> list[dict]:
        return [m for m in self.socket.messages if m.get("job_id") == job_id and (kind is None or m["type"] == kind)]

    async def until(self, condition, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while not (found := condition()):
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)
        return found

    async def submit(self, images: list[str], **settings) -> str:
        request = JobCreate(images=images, engine="morph", settings=JobSettings(resolution=64, **settings))
        return (await self.queue.submit(request)).id

    def upload(self, count: int) -> list[str]:
        ids = []
        for i in range(count):
            upload_id = f"img{i}"
            save(scene(96, 72, shift=10 * i, hue=60 * i), self.settings.uploads_dir / f"{upload_id}.png")
            self.store.add_upload(upload_id, f"{upload_id}.png", 96, 72, 1)
            ids.append(upload_id)
        return ids


def studio_settings(tmp_path) -> Settings:
    """Settings of a morph-engine studio whose data folder is `tmp_path / "data"`, its folders made."""
    settings = Settings(data_dir=tmp_path / "data", default_engine="morph")
    settings.ensure_dirs()
    return settings


def per_pair(*seconds: float):
    """An analysis stand-in that suggests these seconds per transition."""

    async def suggest(_paths):
        return Suggestions(seconds=list(seconds))

    return suggest
