"""Waiting on jobs and listening to the jobs socket of a running studio (HTTP and WebSocket clients)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import websockets

FINISHED = ("completed", "failed", "cancelled")


def why_not_done(job: dict, server=None) -> str:
    """What a test prints when a job it expected to complete did not: the job's error and, given
    the `StudioServer`, the end of its log (the traceback the runner logged)."""
    tail = server.log()[-6000:] if server is not None else ""
    return f"status {job.get('status')!r}, error {job.get('error')!r}\n{tail}"


def wait_for(client: httpx.Client, job_id: str, until=lambda j: j["status"] in FINISHED, timeout=180.0) -> dict:
    """Polls GET /api/jobs/<id> until `until(job)` (by default: the job has finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if until(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach the expected state: {job}")


async def collect_events(
    ws_url: str, job_id: str, stop_types=("job.completed", "job.failed", "job.cancelled"), timeout=180.0
) -> list[dict]:
    """Every message of the jobs socket until `job_id` sends one of `stop_types`."""
    events = []
    async with websockets.connect(ws_url) as ws:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic()))
            events.append(msg)
            if msg.get("job_id") == job_id and msg["type"] in stop_types:
                return events
    raise AssertionError("no final event")


class EventLog:
    """Every message of the jobs socket, from before the jobs are submitted until `finished` have
    all ended (a real WebSocket client on its own thread)."""

    def __init__(self, srv, timeout: float = 600) -> None:
        self.srv, self.timeout = srv, timeout
        self.events: list[dict] = []
        self.finished: set[str] = set()
        self.wanted: set[str] | None = None
        self._open = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self._open.wait(30), "the socket did not open"

    async def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        async with websockets.connect(self.srv.ws_url) as ws:
            self._open.set()
            while time.monotonic() < deadline:
                if self.wanted is not None and self.wanted <= self.finished:
                    return
                try:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except asyncio.TimeoutError:
                    continue
                self.events.append(msg)
                if msg["type"] in ("job.completed", "job.failed", "job.cancelled"):
                    self.finished.add(msg["job_id"])

    def wait(self, job_ids: set[str]) -> list[dict]:
        self.wanted = set(job_ids)
        self._thread.join(self.timeout)
        return self.events


def transition_spans(events: list[dict], job_id: str) -> dict[int, tuple[float, float, set]]:
    """Per transition: first and last progress event and the workers that reported it."""
    spans: dict[int, list] = {}
    for e in events:
        if e.get("type") == "job.progress" and e.get("job_id") == job_id and e.get("stage") == "generate":
            span = spans.setdefault(e["segment"], [e["ts"], e["ts"], set()])
            span[0], span[1] = min(span[0], e["ts"]), max(span[1], e["ts"])
            span[2].add(e.get("worker"))
    return {k: (a, b, w) for k, (a, b, w) in spans.items()}
