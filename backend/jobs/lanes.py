"""The lanes: one per engine, each a line of job ids and the thread(s) that run them.

Each engine has its own lane: a queue and one dedicated thread (torch and CUDA stay on one thread
per lane; the event loop, API and WebSockets stay responsive). A FramePack job stuck loading or
downloading its model therefore never holds up a morph job. Within a lane jobs run one at a time,
by their stored queue position (`jobs.position`: set at submit, changed by a move; the lowest
waiting one runs when a slot frees); on a Ray pool, one per worker. The lane's `asyncio.Queue` is
only a doorbell (one ring per job put), so the order survives a restart with the file. At start-up, a job found `running`
was cut off by a crash or kill: it is marked `interrupted` and queued again, and resumes at its
first unfinished transition.

A lane must outlive any one job: whatever escapes a job (a bug, an event that cannot be built, a
database write on a full disk) ends that job, never the loop. A job's final state is written with
retries; while it cannot be written the lane waits and says so in `/api/health` rather than
dropping it. A supervisor restarts a lane's loop if it ever ends, and a lane with no sign of life
for `STUDIO_WORKER_STALL_S` during a job is reported as stalled.

Lane threads are daemons (`DaemonExecutor`): stopping the server waits for a running step at most
`STOP_WAIT_S`, so a thread blocked in a download or a model load cannot keep the process alive;
the job is left `interrupted` and resumes at the next start.

The lanes run jobs; they never call the queue's commands (the queue calls them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backend.contracts import messages
from backend.contracts.events import (
    JobCancelledEvent,
    JobCompletedEvent,
    JobDeletedEvent,
    JobFailedEvent,
    JobStartedEvent,
    JobTakesEvent,
    JobWarningEvent,
)
from backend.contracts.models import UNFINISHED, WAITING, JobStatus, LaneStatus, TakeStatus, WorkerStatus
from backend.jobs.cluster.task import CancelToken, Workers
from backend.jobs.failures import readable, user_error
from backend.jobs.runner import JobRunner
from backend.jobs.store import Store
from backend.jobs.views import JobViews
from backend.pipeline.engines import Engines
from backend.utils.config import Settings
from backend.utils.daemon_executor import DaemonExecutor
from backend.utils.files import output_dir, partial_path, resolve_stored, tagged_path, take_path, upload_path
from backend.utils.progress import JobCancelled

log = logging.getLogger(__name__)


# Backoff between attempts to write a job's state (seconds); the last value repeats until it works.
STATE_RETRY_DELAYS_S = (0.1, 0.3, 1.0, 3.0)
# How long stopping the server waits for a lane's running step before leaving it `interrupted`.
STOP_WAIT_S = 3.0
# Worst first: the state a lane set reports is that of its least healthy lane.
_STATE_ORDER = ("dead", "cannot_save", "stalled", "running", "idle")


def _sequence(job: dict) -> list[str]:
    """The job's images as its pairs read them: a loop's wrap pair ends on the first image again."""
    images = list(job["request"]["images"])
    return images + images[:1] if (job.get("params") or {}).get("loop") else images


@dataclass
class WorkerHealth:
    """What `/api/health` says about the job worker."""

    restarts: int = 0
    last_error: str | None = None  # the last error that escaped a job or the loop itself
    state_error: str | None = None  # set while a job's state cannot be written
    last_beat: float = field(default_factory=time.monotonic)
    last_error_at: float = 0.0

    def note_error(self, text: str) -> None:
        self.last_error, self.last_error_at = text, time.monotonic()


class PromptService(Protocol):
    async def english_prompts(
        self, prompts: list[str | None], image_paths: list[Path], analysis_wait_s: float = 0.0
    ) -> list[Any]: ...


@dataclass
class Lane:
    """One engine's queue and thread(s). Embedded, a lane runs one job at a time; on a Ray pool,
    as many as the pool has workers (their takes share the workers by the pool's rule)."""

    name: str
    capacity: Callable[[], int] = lambda: 1
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    executor: DaemonExecutor | None = None
    task: asyncio.Task | None = None
    jobs: dict[str, CancelToken] = field(default_factory=dict)  # running job -> its cancel token
    runs: set[asyncio.Task] = field(default_factory=set)  # jobs running beside the loop (capacity > 1)
    freed: asyncio.Event = field(default_factory=asyncio.Event)
    health: WorkerHealth = field(default_factory=WorkerHealth)
    threads: int = 1

    def __post_init__(self) -> None:
        if self.executor is None:
            self.executor = DaemonExecutor(f"lane-{self.name}", threads=self.threads)

    @property
    def running(self) -> str | None:
        return next(iter(self.jobs), None)

    def status(self, stall_s: float, waiting: int | None = None) -> LaneStatus:
        h = self.health
        alive = self.task is not None and not self.task.done()
        quiet_s = time.monotonic() - h.last_beat
        stalled = self.running is not None and quiet_s > stall_s
        if not alive:
            state = "dead"
        elif h.state_error:
            state = "cannot_save"
        elif stalled:
            state = "stalled"
        else:
            state = "running" if self.running else "idle"
        return LaneStatus(
            ok=state in ("running", "idle"),
            state=state,
            running=self.running,
            running_jobs=list(self.jobs),
            queued=self.queue.qsize() if waiting is None else waiting,
            restarts=h.restarts,
            quiet_s=round(quiet_s, 1) if self.running else None,
            last_error=h.last_error,
            state_error=h.state_error,
        )


class Lanes:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        views: JobViews,
        engines: Engines,
        workers: Workers,
        prompts: PromptService | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.views = views
        self.engines = engines
        self.workers = workers
        self.prompts = prompts
        self.runner = JobRunner(settings, store, engines, self.publish_from_worker, workers)
        # Embedded: one job per lane at a time. A pool: up to one job per worker per lane, each on
        # a thread that mostly waits for its takes to come back.
        pooled = workers.parallel > 1 or settings.cluster == "ray"
        self.by_engine: dict[str, Lane] = {
            name: Lane(name, capacity=lambda: self.workers.parallel, threads=256 if pooled else 1)
            for name in engines.names()
        }
        self._stopping = False
        self._delete_after: set[str] = set()

    def lane(self, engine: str) -> Lane:
        return self.by_engine.get(engine) or next(iter(self.by_engine.values()))

    def running_lane(self, job_id: str) -> Lane | None:
        return next((lane for lane in self.by_engine.values() if job_id in lane.jobs), None)

    def put(self, engine: str, job_id: str) -> None:
        """Rings the job's engine lane: it has one more waiting job. The lane runs its waiting jobs
        by their stored position, not in the order they were put (a job put twice runs once)."""
        self.lane(engine).queue.put_nowait(job_id)

    def cancel_running(self, job_id: str, then_delete: bool = False) -> bool:
        """Asks a running job to stop (the lane marks it cancelled once its stage stops); with
        `then_delete`, the lane removes it after. False when the job is not running here."""
        lane = self.running_lane(job_id)
        if lane is None or job_id not in lane.jobs:
            return False
        if then_delete:
            self._delete_after.add(job_id)
        lane.jobs[job_id].set("cancel")
        return True

    async def start(self) -> None:
        # A pool connects or starts Ray off the event loop; jobs wait for its workers meanwhile.
        # On a daemon thread: a cluster that never answers must not keep a stopped studio alive.
        starter = DaemonExecutor("workers-start")
        self._workers_start = asyncio.get_running_loop().run_in_executor(starter, self.workers.start)
        self.recover()
        for lane in self.by_engine.values():
            lane.task = asyncio.create_task(self._supervise(lane), name=f"job-lane-{lane.name}")

    def recover(self, only: Lane | None = None) -> None:
        """Queues every unfinished job in its engine's lane; one left `running` was cut off and
        resumes."""
        for job in self.store.list_jobs((JobStatus.running,)):
            if only is not None and self.lane(job["engine"]) is not only:
                continue
            if self.running_lane(job["id"]) is not None:
                continue
            self.store.update_job(
                job["id"],
                status=JobStatus.interrupted,
                stage="interrupted",
                warnings=(job.get("warnings") or [])
                + ["the studio stopped while this job ran; it resumes from its last finished segment"],
            )
        for job in self.store.list_jobs(UNFINISHED):
            lane = self.lane(job["engine"])
            if only is None or lane is only:
                lane.queue.put_nowait(job["id"])  # a job queued twice runs once: the lane skips it

    async def stop(self) -> None:
        """Stops every lane; a running job is left `interrupted` so the next start resumes it.

        Bounded: a lane thread that does not finish its step within STOP_WAIT_S (a download or
        model load that does not look at the cancel token) is left behind; it is a daemon."""
        self._stopping = True
        for lane in self.by_engine.values():
            for token in list(lane.jobs.values()):
                token.set("shutdown")
        tasks = [lane.task for lane in self.by_engine.values() if lane.task is not None]
        tasks += [run for lane in self.by_engine.values() for run in lane.runs]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(
                    None, functools.partial(lane.executor.shutdown, True, cancel_futures=True, timeout=STOP_WAIT_S)
                )
                for lane in self.by_engine.values()
                if lane.executor is not None
            )
        )
        starting = getattr(self, "_workers_start", None)
        if starting is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(starting), STOP_WAIT_S)
        stopper = DaemonExecutor("workers-stop")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop.run_in_executor(stopper, self.workers.stop), 2 * STOP_WAIT_S)

    def publish_from_worker(self, event) -> None:
        lane = self.running_lane(event.job_id)
        if lane is not None:
            lane.health.last_beat = time.monotonic()
        self.views.publish_threadsafe(event)

    def cluster_view(self) -> dict[str, Any]:
        """Where transitions run, as /monitor shows it (`mode`, `workers`, ...)."""
        try:
            return self.workers.view()
        except Exception as exc:  # a monitor sample must not fail for it
            return {"mode": self.settings.cluster, "address": None, "error": str(exc), "workers": []}

    def worker_status(self) -> WorkerStatus:
        """The lanes as `/api/health` shows them: the top level is the least healthy lane (so one
        dead or stalled lane is a 503), `lanes` has each one; `ok` is False when jobs cannot make
        progress."""
        lanes = {
            name: lane.status(self.settings.worker_stall_s, self.waiting_count(lane))
            for name, lane in self.by_engine.items()
        }
        worst = min(lanes.values(), key=lambda st: _STATE_ORDER.index(st.state))
        errors = [
            (lane.health.last_error_at, st.last_error)
            for lane, st in zip(self.by_engine.values(), lanes.values())
            if st.last_error
        ]
        return WorkerStatus(
            ok=all(st.ok for st in lanes.values()),
            state=worst.state,
            running=worst.running or next((st.running for st in lanes.values() if st.running), None),
            running_jobs=[job for st in lanes.values() for job in st.running_jobs],
            queued=sum(st.queued for st in lanes.values()),
            restarts=sum(st.restarts for st in lanes.values()),
            quiet_s=worst.quiet_s,
            last_error=max(errors)[1] if errors else None,
            state_error=next((st.state_error for st in lanes.values() if st.state_error), None),
            lanes=lanes,
        )

    def remove(self, job_id: str) -> None:
        self.store.delete_job(job_id)
        shutil.rmtree(output_dir(self.settings, job_id), ignore_errors=True)
        self.views.publish(JobDeletedEvent(job_id=job_id))

    async def _supervise(self, lane: Lane) -> None:
        """Runs a lane's loop and starts it again should it ever end by an error."""
        while True:
            try:
                await self._work(lane)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - the loop must come back whatever broke it
                if self._stopping:
                    raise
                lane.health.restarts += 1
                lane.health.note_error(readable(exc))
                log.critical(
                    "the %s job lane stopped unexpectedly; restarting it\n%s", lane.name, traceback.format_exc()
                )
                await asyncio.sleep(STATE_RETRY_DELAYS_S[0])
                # The job in hand when the loop broke is still unfinished in the store.
                await self._with_retries(lane.health, "recover unfinished jobs", self.recover, lane)

    async def _work(self, lane: Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while len(lane.jobs) >= max(1, lane.capacity()):
                lane.freed.clear()
                # Also wakes now and then: a pool's workers may come up while jobs wait.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(lane.freed.wait(), 1.0)
            await lane.queue.get()  # a doorbell: which job runs is the stored order's word
            job = await self._with_retries(lane.health, "read the queue", self._next_waiting, lane)
            if job is None:
                continue
            job_id = job["id"]
            lane.jobs[job_id] = CancelToken()
            lane.health.last_beat = time.monotonic()
            if lane.capacity() <= 1 and not lane.runs:
                await self._run_tracked(lane, loop, job)
            else:
                run = asyncio.create_task(self._run_tracked(lane, loop, job), name=f"job-{job_id}")
                lane.runs.add(run)
                run.add_done_callback(lane.runs.discard)

    def _next_waiting(self, lane: Lane) -> dict | None:
        """The waiting job of this lane with the lowest stored position (`Store.waiting_order`),
        not running here already; None when there is none. A row found damaged on reading is no
        longer waiting, and the next one is taken."""
        for row in self.store.waiting_order(WAITING):
            if self.lane(row["engine"]) is not lane or row["id"] in lane.jobs:
                continue
            job = self.store.get_job(row["id"])
            if job is not None and job["status"] in WAITING:
                return job
        return None

    def waiting_count(self, lane: Lane) -> int:
        try:
            rows = self.store.waiting_order(WAITING)
        except Exception:  # health must answer whatever the store does
            return lane.queue.qsize()
        return sum(1 for r in rows if self.lane(r["engine"]) is lane and r["id"] not in lane.jobs)

    async def _run_tracked(self, lane: Lane, loop: asyncio.AbstractEventLoop, job: dict) -> None:
        job_id = job["id"]
        try:
            await self._run_one(loop, job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A failure outside the stages themselves (an event, a state write): the job ends
            # failed and the loop goes on to the next one.
            log.error("job %s failed outside its stages:\n%s", job_id, traceback.format_exc())
            lane.health.note_error(readable(exc))
            await self._fail(lane, job_id, exc)
        finally:
            lane.jobs.pop(job_id, None)
            lane.freed.set()
            if job_id in self._delete_after:
                self._delete_after.discard(job_id)
                try:
                    self.remove(job_id)
                except Exception:
                    log.exception("could not delete job %s after cancelling it", job_id)

    async def _with_retries(self, health: WorkerHealth, what: str, fn, *args, **kwargs):
        """Calls a store method until it works; while it fails, health says why."""
        for attempt in itertools.count():
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if attempt == 0:
                    log.error("could not %s (%s); retrying until it works", what, exc)
                health.state_error = f"could not {what}: {readable(exc)}"
                await asyncio.sleep(STATE_RETRY_DELAYS_S[min(attempt, len(STATE_RETRY_DELAYS_S) - 1)])
                continue
            if health.state_error:
                log.warning("%s worked again after %d failed attempts", what, attempt)
                health.state_error = None
            return result

    async def _save(self, lane: Lane, job_id: str, **fields) -> None:
        """Writes a job's state, retrying until it is stored: a final state is never dropped."""
        await self._with_retries(lane.health, f"save job {job_id}", self.store.update_job, job_id, **fields)

    async def _fail(self, lane: Lane, job_id: str, exc: BaseException) -> None:
        try:
            job = self.store.get_job(job_id) or {}
        except Exception:
            job = {}
        message, details, said = user_error(exc, job.get("stage"))
        current = dict(job.get("current") or {}, error_details=details, error_message=said)
        await self._save(
            lane,
            job_id,
            status=JobStatus.failed,
            stage="failed",
            error=message,
            current=current,
            finished_at=time.time(),
        )
        self.views.emit(JobFailedEvent, job_id)

    async def _translate_takes(self, job: dict) -> None:
        """A take's own prompt, in English for the engine, kept in the take's parameters."""
        for take in self.store.takes(job["id"]):
            seg = take.get("params") or {}
            if take["status"] == TakeStatus.done or not take.get("prompt") or seg.get("prompt_english"):
                continue
            english = take["prompt"]
            if self.prompts is not None:
                i = take["idx"]
                images = _sequence(job)[i : i + 2]
                paths = [upload_path(self.settings, u) for u in images]
                [result] = await self.prompts.english_prompts([take["prompt"]], paths, analysis_wait_s=0.0)
                english = result.english
                for w in result.warnings:
                    self.views.publish(JobWarningEvent(job_id=job["id"], message=w))
            self.store.set_take_params(job["id"], take["idx"], take["take"], dict(seg, prompt_english=english))

    async def _translate(self, job: dict) -> None:
        await self._translate_takes(job)
        prompts = job.get("prompts") or []
        if all(p.get("english") is not None for p in prompts):
            return
        originals = [p.get("original") or None for p in prompts]
        if self.prompts is None:
            english: list[dict[str, Any]] = [
                {"original": o or "", "english": o or "", "warnings": []} for o in originals
            ]
        else:
            paths = [upload_path(self.settings, i) for i in _sequence(job)]
            # Blank prompts are filled from the image analysis; morph does not read prompts, so it
            # never waits for the analysis model.
            wait_s = self.settings.analysis_load_timeout_s if job["engine"] == "framepack" else 0.0
            results = await self.prompts.english_prompts(originals, paths, analysis_wait_s=wait_s)
            english = [{"original": r.original, "english": r.english, "warnings": list(r.warnings)} for r in results]
        warnings = [w for p in english for w in p.get("warnings", [])]
        for w in warnings:
            self.views.publish(JobWarningEvent(job_id=job["id"], message=w))
        self.store.update_job(job["id"], prompts=english, warnings=(job.get("warnings") or []) + warnings)

    async def _run_one(self, loop: asyncio.AbstractEventLoop, job: dict) -> None:
        job_id = job["id"]
        lane = self.lane(job["engine"])
        token = lane.jobs[job_id]
        make_takes = (job.get("current") or {}).get("run") != "rebuild"
        # A re-roll or rebuild of a job that has its video is an edit: cancelling or failing it
        # ends the edit, not the job, which keeps its video.
        editing = bool(job.get("video_path")) and resolve_stored(self.settings, job["video_path"]).exists()
        try:
            self.store.update_job(
                job_id,
                status=JobStatus.running,
                stage="prompts",
                error=None,
                started_at=job.get("started_at") or time.time(),
                attempts=(job.get("attempts") or 0) + 1,
            )
            self.views.emit(JobStartedEvent, job_id)
            await self._translate(self.store.get_job(job_id) or job)
            await loop.run_in_executor(lane.executor, self.workers.before_job, job["engine"])
            await loop.run_in_executor(lane.executor, self.runner.run, job_id, token, make_takes)
        except JobCancelled:
            if token.reason == "shutdown":
                await self._save(lane, job_id, status=JobStatus.interrupted, stage="interrupted")
                return
            if editing:
                await self._end_edit(lane, job_id, None)
            else:
                await self._save(lane, job_id, status=JobStatus.cancelled, stage="cancelled", finished_at=time.time())
            self.views.emit(JobCancelledEvent, job_id)
            await self._release_quietly(loop, lane, job["engine"])
        except asyncio.CancelledError:
            # The app is shutting down while the thread finishes its step: leave it resumable.
            # One attempt only: shutdown must not wait on a failing disk (start-up recovers a job
            # left `running` the same way).
            try:
                self.store.update_job(job_id, status=JobStatus.interrupted, stage="interrupted")
            except Exception:
                log.exception("could not mark job %s interrupted; it is recovered at the next start", job_id)
            raise
        except Exception as exc:
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            if editing:
                await self._end_edit(lane, job_id, exc)
                self.views.emit(JobTakesEvent, job_id)
            else:
                await self._fail(lane, job_id, exc)
            await self._release_quietly(loop, lane, job["engine"])
        else:
            await self._save(
                lane, job_id, status=JobStatus.completed, stage="done", progress=1.0, finished_at=time.time()
            )
            self.views.emit(JobCompletedEvent, job_id)

    async def _end_edit(self, lane: Lane, job_id: str, exc: BaseException | None) -> None:
        """A re-roll or rebuild that was cancelled (`exc` None) or failed: the job is completed again
        with its video. A take cut off by the cancel is dropped with its files, so nothing makes it
        later unasked; a take that failed stays, marked failed, and the failure is a warning."""
        job = self.store.get_job(job_id) or {}
        warnings = list(job.get("warnings") or [])
        if exc is None:
            for take in self.store.takes(job_id):
                if take["status"] in (TakeStatus.pending, TakeStatus.running):
                    self.store.delete_take(job_id, take["idx"], take["take"])
                    path = take_path(output_dir(self.settings, job_id), take["idx"], take["take"])
                    for leftover in (path, partial_path(path), tagged_path(path)):
                        leftover.unlink(missing_ok=True)
            warnings.append(messages.bilingual("edit_cancelled"))
        else:
            for take in self.store.takes(job_id):  # what this edit was to make, and did not
                if take["status"] in (TakeStatus.pending, TakeStatus.running):
                    self.store.set_take(job_id, take["idx"], take["take"], TakeStatus.failed)
            _, details, said = user_error(exc, job.get("stage"))
            log.warning("job %s: its re-roll or rebuild failed (%s); the job keeps its video", job_id, details)
            warnings.append(messages.bilingual("edit_failed", {"reason": said}))
        await self._save(
            lane,
            job_id,
            status=JobStatus.completed,
            stage="done",
            progress=1.0,
            finished_at=time.time(),
            warnings=warnings,
            current=None,
        )

    async def _release_quietly(self, loop: asyncio.AbstractEventLoop, lane: Lane, engine: str) -> None:
        try:
            await loop.run_in_executor(lane.executor, self._release, engine)
        except Exception:
            log.exception("releasing the %s engine after a failed job failed", engine)

    def _release(self, engine: str) -> None:
        self.engines.get(engine).release()
