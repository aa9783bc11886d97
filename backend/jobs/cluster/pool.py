"""The Ray pool: one actor per GPU makes transitions for every running job.

Rule between jobs: a free worker goes to the waiting take of the oldest job (by creation time),
then the lowest transition and take among those waiting. A job's takes join the line together
(`admit`), before any of them can be handed a worker: the threads that make them reach the pool
one by one, and on a busy machine a later job's take would otherwise slip into a worker between
them. A job asks for one worker per take it has left, so it never holds more workers than it has
transitions to make, and the next job's takes start on the workers the first leaves idle.
Post-processing waits in the same line, after its job's takes. `handed` keeps the last hand-outs
(which take, which worker, what was next in line) for /monitor and the tests of the rule.

Nothing here holds job state: the runner writes every take to SQLite and disk on this host.
A worker that dies (its process killed, its host gone) has its take run again on the first live
worker, up to `STUDIO_RAY_TASK_RETRIES` times; Ray restarts the actor and the pool takes it back
once it answers. A take that is cancelled is told to stop at its next denoising step.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.contracts.errors import StudioError
from backend.jobs.cluster import leftovers
from backend.jobs.cluster.task import CancelToken, TransitionTask, take_order
from backend.utils.config import Settings
from backend.utils.progress import JobCancelled, Progress, ProgressCallback

log = logging.getLogger(__name__)

NAMESPACE = "framepack-studio"
STATUS_INTERVAL_S = 2.0  # how often the pool asks every worker for its status (for /monitor)
STATUS_TIMEOUT_S = 2.0
PING_TIMEOUT_S = 5.0  # a worker that does not answer `info` within this is not taken back yet
DRAIN_TIMEOUT_S = 30.0  # a cancelled take must end within this, or its actor is restarted
START_TIMEOUT_S = 120.0  # bound on connecting to a cluster and on the first answer of a worker
ACTOR_CONCURRENCY = 4  # a transition, and cancel/status/info calls beside it
HANDED_KEPT = 10  # hand-outs kept for the view: few, as every monitor sample carries them


class WorkerLost(RuntimeError):
    """The worker's process or host went away during a take."""


@dataclass
class Slot:
    name: str
    actor: Any
    state: str = "starting"  # starting | idle | running | lost
    running: dict[str, Any] | None = None
    done: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    dead: bool = False  # its actor cannot come back (its constructor failed): never handed out

    def view(self) -> dict[str, Any]:
        """One worker as /monitor shows it."""
        return {
            "name": self.name,
            "node": self.status.get("node"),
            "node_id": self.status.get("node_id"),
            "pid": self.status.get("pid"),
            "state": self.state,
            "running": self.running,
            "gpu": self.status.get("gpu")
            or {"available": False, "reason": "no report yet", "driver": None, "devices": []},
            "done": self.done,
            "error": self.error,
        }


def _label(order: tuple) -> str:
    """A place in the line as a take's key (`TransitionTask.key`), or `<job>/postprocess`; plain
    text, as the view is JSON (post-processing's order holds an infinity)."""
    _, job_id, index, take = order
    if index == float("inf"):
        return f"{job_id}/postprocess"
    return f"{job_id}/{index}/{take}"


def _ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    return ray


class RayPool:
    """The `Workers` of a studio run with `STUDIO_CLUSTER=ray`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.slots: list[Slot] = []
        self.address: str | None = None
        self.error: str | None = None
        self._cond = threading.Condition()
        self._waiting: list[tuple] = []  # heap of (order, seq)
        # Places in `_waiting` that `admit` took for takes whose threads have not reached the line.
        self._reserved: dict[tuple, tuple] = {}
        self._seq = itertools.count()
        self.handed: deque[dict[str, Any]] = deque(maxlen=HANDED_KEPT)
        self._started_ray = False  # this studio called ray.init (and so ray.shutdown at its stop)
        self._own_ray = False  # ... and that started a Ray of this studio alone, its processes ours
        self.failed = False
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._recorded: set[tuple[int, float]] = set()  # the Ray processes last written to the record

    # --- life cycle -------------------------------------------------------------------------------
    @property
    def parallel(self) -> int:
        return max(1, len(self.slots))

    def start(self) -> None:
        """Connects to (or starts) Ray and starts the workers; blocking, so the app runs it off the
        event loop. The workers load their engines lazily: this waits for none of them."""
        try:
            self._start()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            log.error("the Ray pool did not start: %s", self.error)
            with self._cond:
                self.failed = True
                self._cond.notify_all()

    def _start(self) -> None:
        address = self.settings.ray_address.strip()
        if not address or address.split(":")[0] in ("127.0.0.1", "localhost"):
            # A Ray on this host's loopback. Ray otherwise swaps a loopback address for the host's
            # network address, where such a Ray does not listen; this switch (despite its name)
            # only makes Ray take loopback as this node's address. Read when ray is imported.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = _ray()
        backend_dir = str(Path(__file__).resolve().parents[2])
        runtime_env = {"py_modules": [backend_dir], "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}}
        if not ray.is_initialized():
            # A studio killed with -9 leaves its Ray's agents running for about a minute
            # (`leftovers`): end them before this studio starts Ray or joins a cluster.
            leftovers.end_recorded(self.settings.data_dir)
            if address:
                ray.init(address=address, namespace=NAMESPACE, runtime_env=runtime_env)
            else:
                # A Ray of this studio alone: on loopback, no dashboard, nobody else joins it.
                # address="local": without it ray.init joins the newest Ray on this machine if one
                # is still up, e.g. a studio's killed a moment ago, whose head is about to go.
                ray.init(
                    address="local",
                    namespace=NAMESPACE,
                    runtime_env=runtime_env,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                )
                self._own_ray = True
                self._record_ray_processes()
            self._started_ray = True
        self.address = ray.get_runtime_context().gcs_address
        self._reconcile()
        self._watcher = threading.Thread(target=self._watch, name="ray-pool-watch", daemon=True)
        self._watcher.start()
        log.info("Ray pool: %d worker(s) on %s", len(self.slots), self.address)

    def _record_ray_processes(self) -> None:
        """Writes the Ray processes this studio started to its record, when they changed (a worker
        restarted, an agent came up after `ray.init`); only for a Ray of this studio alone: the
        processes of a cluster it joined are not its own to end."""
        if not self._own_ray:
            return
        try:
            processes = leftovers.ray_processes()
            keys = {(p["pid"], p["create_time"]) for p in processes}
            if keys != self._recorded:
                leftovers.record(self.settings.data_dir, processes)
                self._recorded = keys
        except Exception:
            log.exception("could not record this studio's Ray processes")

    def _wanted(self) -> tuple[int, dict[str, float]]:
        ray = _ray()
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = self.settings.ray_workers or gpus or 1
        resources: dict[str, float] = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        return count, resources

    def _reconcile(self) -> None:
        """One worker per GPU of the cluster (or the configured count): a GPU host that joins
        later gets its worker at the next status round."""
        ray = _ray()
        from backend.jobs.cluster.actor import TransitionWorker

        count, resources = self._wanted()
        studio = self._studio_settings()
        remote = ray.remote(TransitionWorker)
        while len(self.slots) < count:
            name = f"worker-{len(self.slots) + 1}"
            actor = remote.options(
                **resources,
                max_restarts=-1,
                max_concurrency=ACTOR_CONCURRENCY,
                scheduling_strategy="SPREAD",
            ).remote(name, studio)
            with self._cond:
                self.slots.append(Slot(name=name, actor=actor))

    def _studio_settings(self) -> dict[str, Any]:
        # Absolute paths: a worker on this host runs in another folder.
        data = self.settings.model_dump()
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value.resolve())
        return data

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._watcher is not None:
            self._watcher.join(STATUS_INTERVAL_S + STATUS_TIMEOUT_S)
        try:
            ray = _ray()
            if ray.is_initialized():
                for slot in self.slots:
                    try:
                        ray.kill(slot.actor, no_restart=True)
                    except Exception:
                        pass
                if self._started_ray:
                    ray.shutdown()
        except Exception:
            log.exception("stopping the Ray pool")
        if self._own_ray:
            # `ray.shutdown` ends its processes (agents included, measured); this ends any it
            # missed and removes the record, so the next start has nothing to look at.
            leftovers.end_recorded(self.settings.data_dir)

    # --- what the studio shows ----------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        with self._cond:
            workers = [slot.view() for slot in self.slots]
            handed = [dict(h) for h in self.handed]
        return {"mode": "ray", "address": self.address, "error": self.error, "workers": workers, "handed": handed}

    def _watch(self) -> None:
        ray = _ray()
        while not self._stop.wait(STATUS_INTERVAL_S):
            try:
                self._poll(ray)
                self._record_ray_processes()
                if not self.settings.ray_workers:
                    self._reconcile()
                self.error = None
            except Exception as exc:  # the watcher must outlive a cluster hiccup
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("Ray pool status round failed: %s", self.error)

    def _poll(self, ray) -> None:
        from ray import exceptions as rex

        with self._cond:
            slots = list(self.slots)
        refs = {slot.actor.status.remote(): slot for slot in slots}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=STATUS_TIMEOUT_S)
        for ref in ready:
            slot = refs[ref]
            try:
                status = ray.get(ref)
            except Exception as exc:
                text = str(exc).strip().splitlines()
                with self._cond:
                    if isinstance(exc, rex.ActorDiedError) and "creation task" in str(exc):
                        slot.dead = True
                        self._cond.notify_all()
                    if slot.state != "running":
                        slot.state, slot.error = "lost", f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]
                continue
            with self._cond:
                slot.status = status
                if slot.state in ("starting", "lost"):
                    slot.state, slot.error = "idle", None
                    self._cond.notify_all()

    # --- taking a worker ------------------------------------------------------------------------------
    def admit(self, job_id: str, created_at: float, takes: Sequence[tuple[int, int]], token: CancelToken) -> None:
        """Every (transition, take) of `takes` takes its place in the line now, under one lock, so
        no worker is handed out between them; `_acquire` of each take then uses its place. While
        the head of the line is a place whose thread has not come yet, a free worker waits for it
        (moments: the thread is writing its row) rather than go to a take behind it. Places whose
        takes never come are given up when `token` is set."""
        tickets = []
        with self._cond:
            for index, take in takes:
                order = take_order(created_at, job_id, index, take)
                if order in self._reserved:
                    continue
                ticket = (order, next(self._seq))
                self._reserved[order] = ticket
                heapq.heappush(self._waiting, ticket)
                tickets.append(ticket)
            self._cond.notify_all()
        token.listen(lambda _reason: self._withdraw(tickets))

    def _withdraw(self, tickets: list[tuple]) -> None:
        with self._cond:
            left = [t for t in tickets if self._reserved.get(t[0]) is t]
            for ticket in left:
                del self._reserved[ticket[0]]
                self._waiting.remove(ticket)
            if left:
                heapq.heapify(self._waiting)
                self._cond.notify_all()

    def _acquire(self, order: tuple, token: CancelToken) -> Slot:
        stop_listening = token.listen(lambda _reason: self._wake())
        try:
            with self._cond:
                ticket = self._reserved.pop(order, None)
                if ticket is None:
                    ticket = (order, next(self._seq))
                    heapq.heappush(self._waiting, ticket)
                try:
                    while True:
                        if token.event.is_set():
                            raise JobCancelled(token.reason)
                        if self._stop.is_set():
                            raise JobCancelled("shutdown")
                        if (self.failed and not self.slots) or (self.slots and all(s.dead for s in self.slots)):
                            cause = self.error or next((s.error for s in self.slots if s.error), "no worker started")
                            raise StudioError(
                                "cluster_unavailable", address=self.settings.ray_address or "local", cause=cause
                            )
                        if self._waiting[0] == ticket:
                            slot = next((s for s in self.slots if s.state == "idle"), None)
                            if slot is not None:
                                heapq.heappop(self._waiting)
                                slot.state = "running"
                                after = _label(self._waiting[0][0]) if self._waiting else None
                                self.handed.append({"take": _label(order), "worker": slot.name, "next": after})
                                self._cond.notify_all()
                                return slot
                        self._cond.wait(1.0)
                except BaseException:
                    if ticket in self._waiting:
                        self._waiting.remove(ticket)
                        heapq.heapify(self._waiting)
                    self._cond.notify_all()
                    raise
        finally:
            stop_listening()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _release(self, slot: Slot, lost: BaseException | None = None) -> None:
        with self._cond:
            slot.running = None
            if lost is not None:
                slot.state, slot.error = "lost", str(lost)
            elif slot.state == "running":
                slot.state = "idle"
                slot.done += 1
            self._cond.notify_all()

    # --- the Workers interface ------------------------------------------------------------------------
    def before_job(self, engine: str) -> None:
        """Each worker checks its own engine files at the start of a take: nothing to do here."""

    def generate(self, task: TransitionTask, report: ProgressCallback, token: CancelToken) -> np.ndarray:
        running = {"job_id": task.job_id, "transition": task.index + 1, "take": task.take, "engine": task.engine}
        what = f"transition {task.index + 1} / take {task.take}"
        return self._run(
            task.order, token, report, running, task.key, what, lambda slot: slot.actor.transition.remote(task)
        )

    def postprocess(
        self,
        order: tuple,
        src: Path,
        dst: Path,
        options: dict,
        report: ProgressCallback,
        token: CancelToken,
        crf: int,
        metadata: dict,
    ) -> dict:
        job_id = str(order[1])
        key = f"{job_id}/postprocess"
        data = src.read_bytes()
        running = {"job_id": job_id, "transition": None, "take": None, "engine": "postprocess"}
        video, summary = self._run(
            order,
            token,
            report,
            running,
            key,
            "post-processing",
            lambda slot: slot.actor.postprocess.remote(key, data, options, crf, metadata),
        )
        partial = dst.with_suffix(".partial.mp4")
        partial.write_bytes(video)
        partial.replace(dst)
        return summary

    def _run(self, order, token, report, running, key, what, start) -> Any:
        attempts = 0
        while True:
            slot = self._acquire(order, token)
            with self._cond:
                slot.running = dict(running)
            try:
                result = self._consume(slot, start(slot), key, report, token)
            except WorkerLost as exc:
                self._release(slot, lost=exc)
                attempts += 1
                log.warning("%s lost %s (%s); attempt %d", slot.name, key, exc, attempts)
                if attempts > self.settings.ray_task_retries:
                    raise StudioError("job_failed_worker_lost", what=what, attempts=attempts) from exc
                continue
            except BaseException:
                self._release(slot)
                raise
            self._release(slot)
            return result

    def _consume(self, slot: Slot, stream, key: str, report: ProgressCallback, token: CancelToken) -> Any:
        ray = _ray()
        from ray import exceptions as rex

        lost_errors = (rex.RayActorError, rex.ActorUnavailableError, rex.WorkerCrashedError, rex.ObjectLostError)
        stop_listening = token.listen(lambda _reason: self._cancel_quietly(slot, key))
        result, has_result = None, False
        try:
            for ref in stream:
                kind, value = ray.get(ref)
                if kind == "result":
                    result, has_result = value, True
                    continue
                stage, fraction, message, detail = value
                try:
                    report(Progress(stage, fraction, message, dict(detail, worker=slot.name)))
                except JobCancelled:
                    self._cancel_quietly(slot, key)
                    self._drain(slot, stream)
                    raise
        except rex.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            if isinstance(cause, JobCancelled):
                raise JobCancelled(token.reason if token.event.is_set() else "cancel") from None
            raise cause from None
        except lost_errors as exc:
            raise WorkerLost(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        finally:
            stop_listening()
        if token.event.is_set():
            raise JobCancelled(token.reason)
        if not has_result:
            raise WorkerLost("the worker's stream ended without a result")
        return result

    def _cancel_quietly(self, slot: Slot, key: str) -> None:
        try:
            slot.actor.cancel.remote(key)
        except Exception:
            log.exception("could not tell %s to stop %s", slot.name, key)

    def _drain(self, slot: Slot, stream) -> None:
        """Waits (bounded) for a cancelled take's stream to end, so its worker is free again when
        it is handed out; one that does not end in time is restarted."""
        ray = _ray()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            ready, _ = ray.wait([stream], timeout=max(0.0, left)) if left > 0 else ([], None)
            if not ready:
                log.warning("%s did not stop within %.0f s; restarting it", slot.name, DRAIN_TIMEOUT_S)
                try:
                    ray.kill(slot.actor, no_restart=False)
                except Exception:
                    pass
                with self._cond:
                    slot.state = "lost"
                return
            try:
                ray.get(next(stream))
            except StopIteration:
                return
            except Exception:  # the stream's end: the worker's JobCancelled, or its death
                return
