"""The Ray worker: one actor per GPU, holding its engines loaded between transitions.

It keeps no job state. A transition comes in as a `TransitionTask` and goes back as a stream:
progress records while it runs (previews included), then its frames; post-processing comes in
as the joined video's bytes and goes back as the finished video's bytes. The studio's store and
files never leave the studio host, so the GPU hosts need no shared disk.

The actor is threaded: `cancel` and `status` are answered while a transition runs, and the
engine's progress callback raises `JobCancelled` at its next step once `cancel` names the take.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from backend.jobs.cluster.task import RemoteError, TransitionTask
from backend.utils.config import Settings
from backend.utils.progress import JobCancelled, Progress

log = logging.getLogger(__name__)

# Progress goes back at most this often, except on a stage or section change, a preview, a
# warning or the end of a stage: every denoising step through the object store is needless.
FORWARD_INTERVAL_S = 0.05
_END = object()


def worker_settings(studio: dict[str, Any]) -> Settings:
    """The studio's settings, except those this host sets in its own environment or `.env` (its
    model folders, say): a GPU host with nothing configured behaves as the studio does."""
    own = Settings()
    merged = dict(studio)
    merged.update({name: getattr(own, name) for name in own.model_fields_set})
    return Settings(**merged)


class TransitionWorker:
    def __init__(self, name: str, studio_settings: dict[str, Any]) -> None:
        from backend.pipeline.engines import Engines
        from backend.utils.gpu import SystemProbe

        self.name = name
        self.settings = worker_settings(studio_settings)
        self.engines = Engines(self.settings)
        self.probe = SystemProbe()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._running: dict[str, Any] | None = None
        self._done = 0

    # --- questions answered while a transition runs ---------------------------------------------
    def info(self) -> dict[str, Any]:
        import ray

        return {
            "name": self.name,
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        }

    def status(self) -> dict[str, Any]:
        """What /monitor shows: this worker's GPU(s), what it runs, how much it has done."""
        info = self.info()
        gpu = self.probe.read_gpus()
        ids = set(info["gpu_ids"])
        if gpu.get("available") and ids:
            # NVML counts every GPU of the host; this worker owns those Ray gave it.
            devices = [d for d in gpu["devices"] if str(d.get("index")) in ids]
            gpu = dict(gpu, devices=devices or gpu["devices"])
        with self._lock:
            running = dict(self._running) if self._running else None
            done = self._done
        engines = {}
        for engine in self.engines.names():
            try:
                state = self.engines.state(engine)
                engines[engine] = {k: state.get(k) for k in ("installed", "ready", "reason", "reason_ko")}
            except Exception as exc:  # a status must answer whatever one engine says
                engines[engine] = {"installed": False, "reason": str(exc)}
        return dict(info, running=running, done=done, gpu=gpu, engines=engines)

    def cancel(self, key: str) -> None:
        with self._lock:
            self._cancelled.add(key)

    # --- work -----------------------------------------------------------------------------------
    def transition(self, task: TransitionTask) -> Iterator[tuple[str, Any]]:
        def work(report: Callable[[Progress], None]):
            self.engines.before_job(task.engine)
            engine = self.engines.get(task.engine)
            return engine.generate(
                task.first, task.last, task.prompt, task.segment, task.params, report, keyframes=task.keyframes
            )

        running = {"job_id": task.job_id, "transition": task.index + 1, "take": task.take, "engine": task.engine}
        yield from self._stream(task.key, running, work)

    def postprocess(self, key: str, src: bytes, options: dict, crf: int, metadata: dict) -> Iterator[tuple[str, Any]]:
        def work(report: Callable[[Progress], None]):
            from backend.pipeline.postprocess import run_postprocess

            with tempfile.TemporaryDirectory(prefix="studio-post-") as folder:
                joined, final = Path(folder) / "joined.mp4", Path(folder) / "final.mp4"
                joined.write_bytes(src)
                summary = run_postprocess(joined, final, options, self.settings, report, crf=crf, metadata=metadata)
                return final.read_bytes(), summary

        running = {"job_id": key.split("/")[0], "transition": None, "take": None, "engine": "postprocess"}
        yield from self._stream(key, running, work)

    def _stream(self, key: str, running: dict, work: Callable) -> Iterator[tuple[str, Any]]:
        """Runs `work(report)` on a thread of its own and yields ("progress", record) items, then
        ("result", value); an error in `work` is raised here, so Ray hands it to the studio."""
        items: queue.SimpleQueue = queue.SimpleQueue()
        last: dict[str, Any] = {"at": 0.0, "key": None}

        def report(p: Progress) -> None:
            with self._lock:
                stop = key in self._cancelled
            if stop:
                raise JobCancelled("cancel")
            now = time.monotonic()
            mark = (p.stage, p.detail.get("section"))
            special = "preview_frames" in p.detail or "warning" in p.detail or p.fraction >= 1.0
            if special or mark != last["key"] or now - last["at"] >= FORWARD_INTERVAL_S:
                last["at"], last["key"] = now, mark
                items.put(("progress", (p.stage, p.fraction, p.message, dict(p.detail))))

        def run() -> None:
            try:
                items.put(("result", work(report)))
            except BaseException as exc:  # noqa: BLE001 - handed to the studio through the stream
                items.put(("error", RemoteError.carrying(exc)))
            finally:
                items.put(_END)

        with self._lock:
            self._cancelled.discard(key)
            self._running = running
        thread = threading.Thread(target=run, name=f"take-{key}", daemon=True)
        thread.start()
        try:
            while True:
                item = items.get()
                if item is _END:
                    return
                kind, value = item
                if kind == "error":
                    raise value
                yield kind, value
                if kind == "result":
                    with self._lock:
                        self._done += 1
        finally:
            with self._lock:
                self._running = None
                self._cancelled.discard(key)
