"""A job's progress as the page sees it: stage reports from the engines and the encoder become one
progress, an ETA, throttled `job.progress` events and throttled writes of the job's state.

Handed the few things it does (`JobHooks`), not the runner: it publishes, saves, warns and writes a
preview, and raises `JobCancelled` from inside a stage's report when the job is asked to stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.contracts.events import JobEvent, JobProgressEvent
from backend.jobs.cluster.task import CancelToken
from backend.utils.progress import JobCancelled, Progress

EVENT_INTERVAL_S = 0.1  # at most this often a progress event per job, except on section/stage changes
DB_INTERVAL_S = 1.0
POST_STAGES = ("face_restore", "upscale", "interpolate", "encode", "postprocess", "download")


@dataclass(frozen=True)
class JobHooks:
    """What a reporter does to the world: send an event, store a job's fields, add a warning, write
    a section's preview."""

    publish: Callable[[JobEvent], None]
    save: Callable[..., None]  # (job_id, **fields)
    warn: Callable[[str, str], None]  # (job_id, message)
    write_preview: Callable[[str, int, int, np.ndarray], None]  # (job_id, transition, section, frames)


class Reporter:
    """Turns stage progress into job progress, ETA, throttled events and DB writes.

    Transitions may report from several threads at once (the Ray pool makes them in parallel):
    each has its own fraction, the job's progress is their weighted sum, and the ETA follows the
    pace of the whole, so it shortens by itself with more workers."""

    def __init__(
        self,
        job_id: str,
        token: CancelToken,
        hooks: JobHooks,
        start_progress: float,
        weights: dict[str, float],
        transition_weights: list[float],
    ) -> None:
        self.hooks = hooks
        self.job_id = job_id
        self.token = token
        self.started = time.monotonic()
        self.start_progress = start_progress
        self.weights = weights
        self.transition_weights = transition_weights
        self.transition = 0  # the transition a report without one of its own belongs to
        self.progress = start_progress
        self.fractions: dict[int, float] = {}
        self.running: set[int] = set()
        self._lock = threading.RLock()
        self._last_event = 0.0
        self._last_db = 0.0
        self._last_key: tuple = ()
        self.current: dict[str, Any] = {}

    def for_transition(self, index: int) -> Callable[[Progress], None]:
        """The callback one transition's take reports through."""
        return lambda p: self.report(p, index)

    def begin(self, index: int) -> None:
        """A take of `index` is handed to the workers; it counts as running from its first report
        (on a pool it may first wait for a worker)."""
        with self._lock:
            self.fractions.setdefault(index, 0.0)

    def end(self, index: int, done: bool) -> None:
        with self._lock:
            self.running.discard(index)
            if done:
                self.fractions[index] = 1.0

    def overall(self, stage: str, fraction: float, transition: int | None = None) -> float:
        w = self.weights
        if stage in ("generate", "load"):
            here = self.transition if transition is None else transition
            if stage == "generate":
                # Best of K: the next take of a transition starts its fraction afresh; the bar never
                # goes back (`progress` is a running maximum).
                self.fractions[here] = fraction
            done = sum(
                weight * (1.0 if i < self.transition and i not in self.fractions else self.fractions.get(i, 0.0))
                for i, weight in enumerate(self.transition_weights)
            )
            return w["generate"] * done
        if stage == "join":
            return w["generate"] + w["join"] * fraction
        return w["generate"] + w["join"] + w["postprocess"] * fraction

    def __call__(self, p: Progress) -> None:
        self.report(p, None)

    def report(self, p: Progress, transition: int | None) -> None:
        if self.token.event.is_set():
            raise JobCancelled(self.token.reason)
        detail = dict(p.detail)
        if "warning" in detail:  # e.g. a section re-run in a safer dtype: shown on the page
            self.hooks.warn(self.job_id, str(detail["warning"]))
            return
        preview = detail.pop("preview_frames", None)
        with self._lock:
            index = self.transition if transition is None else transition
            stage = "postprocess" if p.stage in POST_STAGES else p.stage
            if transition is not None and stage in ("generate", "load"):
                self.running.add(index)
            fraction = p.fraction if stage != "postprocess" else detail.get("overall", p.fraction)
            self.progress = max(self.progress, min(1.0, self.overall(stage, fraction, index)))
            now = time.monotonic()
            elapsed = now - self.started
            gained = self.progress - self.start_progress
            eta = elapsed * (1 - self.progress) / gained if gained > 0.01 else None
            generating = stage in ("generate", "load")
            self.current = {
                "segment": index + 1 if generating else None,
                "segments": len(self.transition_weights),
                "section": detail.get("section"),
                "sections": detail.get("sections"),
                "step": detail.get("step"),
                "steps": detail.get("steps"),
                "running": sorted(i + 1 for i in self.running) if generating and self.running else None,
                "worker": detail.get("worker"),
            }
            current = dict(self.current)
            key = (p.stage, index, detail.get("section"))
            important = key != self._last_key or preview is not None or p.fraction >= 1.0
            send = important or now - self._last_event >= EVENT_INTERVAL_S
            if send:
                self._last_event, self._last_key = now, key
            save = important or now - self._last_db >= DB_INTERVAL_S
            if save:
                self._last_db = now
            progress = self.progress
        # The last section's preview would be the whole take, which is written as its own file
        # right after; the runner points the preview there instead of encoding it twice.
        if preview is not None and detail.get("section") != detail.get("sections"):
            self.hooks.write_preview(self.job_id, index, detail.get("section") or 0, preview)
        if send:
            self.hooks.publish(
                JobProgressEvent(
                    job_id=self.job_id,
                    stage=p.stage,
                    progress=round(progress, 4),
                    eta_s=None if eta is None else round(eta, 1),
                    elapsed_s=round(elapsed, 1),
                    message=p.message,
                    **current,
                )
            )
        if save:
            self.hooks.save(self.job_id, progress=progress, stage=p.stage, current=current)
