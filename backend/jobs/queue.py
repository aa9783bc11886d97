"""The persistent job queue: SQLite holds the state, one lane per engine does the work.

Each engine has its own lane: a queue and one dedicated thread (torch and CUDA stay on one thread
per lane; the event loop, API and WebSockets stay responsive). A FramePack job stuck loading or
downloading its model therefore never holds up a morph job. Within a lane jobs run one at a time,
in the order they were created. At start-up, a job found `running` was cut off by a crash or
kill: it is marked `interrupted` and queued again, and resumes at its first unfinished segment.

Submitting never waits on a model: the engine's readiness is read from disk, image-analysis
suggestions are used only when they are already computed (otherwise the job says it used the
defaults), and everything else happens in the lane.

A lane must outlive any one job: whatever escapes a job (a bug, an event that cannot be built, a
database write on a full disk) ends that job, never the loop. A job's final state is written with
retries; while it cannot be written the lane waits and says so in `/api/health` rather than
dropping it. A supervisor restarts a lane's loop if it ever ends, and a lane with no sign of life
for `STUDIO_WORKER_STALL_S` during a job is reported as stalled.

Lane threads are daemons (`DaemonExecutor`): stopping the server waits for a running step at most
`STOP_WAIT_S`, so a thread blocked in a download or a model load cannot keep the process alive;
the job is left `interrupted` and resumes at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import shutil
import sqlite3
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.contracts.events import (
    JobCancelledEvent,
    JobChangeEvent,
    JobCompletedEvent,
    JobDeletedEvent,
    JobFailedEvent,
    JobQueuedEvent,
    JobStartedEvent,
    JobTakesEvent,
    JobWarningEvent,
)
from backend.contracts.models import (
    RETRYABLE,
    UNFINISHED,
    WAITING,
    JobCreate,
    JobCreated,
    JobImage,
    JobStatus,
    JobView,
    LaneStatus,
    SegmentStatus,
    SegmentView,
    TakeCreate,
    TakeStatus,
    TakeView,
    TransitionView,
    WorkerStatus,
)
from backend.jobs import params as smart_params
from backend.jobs.cluster.local import LocalWorkers
from backend.jobs.cluster.task import RemoteError, Workers
from backend.jobs.fanout import WebSocketManager
from backend.jobs.runner import CancelToken, JobRunner, output_dir, output_url, resolve_stored
from backend.jobs.store import BROKEN_STAGE, Store
from backend.pipeline.engines import Engines, not_ready_reason, runnable
from backend.utils.config import Settings
from backend.utils.daemon_executor import DaemonExecutor
from backend.utils.files import upload_path, upload_url
from backend.utils.model_registry import MissingWeightError
from backend.utils.progress import JobCancelled
from backend.utils.redact import hide_paths, hide_paths_in

log = logging.getLogger(__name__)


class JobError(StudioError):
    """A job request the queue refuses; its code chooses the HTTP status in the web layer."""


# Backoff between attempts to write a job's state (seconds); the last value repeats until it works.
STATE_RETRY_DELAYS_S = (0.1, 0.3, 1.0, 3.0)
# How long stopping the server waits for a lane's running step before leaving it `interrupted`.
STOP_WAIT_S = 3.0
# Worst first: the state a lane set reports is that of its least healthy lane.
_STATE_ORDER = ("dead", "cannot_save", "stalled", "running", "idle")
ANALYSIS_DEFAULTS_NOTE = messages.bilingual("analysis_defaults_used")


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

    def status(self, stall_s: float) -> LaneStatus:
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
            queued=self.queue.qsize(),
            restarts=h.restarts,
            quiet_s=round(quiet_s, 1) if self.running else None,
            last_error=h.last_error,
            state_error=h.state_error,
        )


class JobQueue:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        ws: WebSocketManager,
        engines: Engines,
        prompts: PromptService | None = None,
        suggest=None,
        workers: Workers | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.ws = ws
        self.engines = engines
        self.prompts = prompts
        # async (image_paths) -> smart_params.Suggestions | None, answering at once: None when
        # the analysis is not ready yet.
        self.suggest = suggest
        self.workers: Workers = workers or LocalWorkers(settings, engines)
        self.runner = JobRunner(settings, store, engines, self._publish_from_worker, self.workers)
        # Embedded: one job per lane at a time. A pool: up to one job per worker per lane, each on
        # a thread that mostly waits for its takes to come back.
        pooled = self.workers.parallel > 1 or settings.cluster == "ray"
        self.lanes: dict[str, Lane] = {
            name: Lane(name, capacity=lambda: self.workers.parallel, threads=256 if pooled else 1)
            for name in engines.names()
        }
        self._stopping = False
        self._delete_after: set[str] = set()

    def _lane(self, engine: str) -> Lane:
        return self.lanes.get(engine) or next(iter(self.lanes.values()))

    def _lane_running(self, job_id: str) -> Lane | None:
        return next((lane for lane in self.lanes.values() if job_id in lane.jobs), None)

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        # A pool connects or starts Ray off the event loop; jobs wait for its workers meanwhile.
        # On a daemon thread: a cluster that never answers must not keep a stopped studio alive.
        starter = DaemonExecutor("workers-start")
        self._workers_start = asyncio.get_running_loop().run_in_executor(starter, self.workers.start)
        self._recover()
        for lane in self.lanes.values():
            lane.task = asyncio.create_task(self._supervise(lane), name=f"job-lane-{lane.name}")

    def _recover(self, only: Lane | None = None) -> None:
        """Queues every unfinished job in its engine's lane; one left `running` was cut off and
        resumes."""
        for job in self.store.list_jobs((JobStatus.running,)):
            if only is not None and self._lane(job["engine"]) is not only:
                continue
            if self._lane_running(job["id"]) is not None:
                continue
            self.store.update_job(
                job["id"],
                status=JobStatus.interrupted,
                stage="interrupted",
                warnings=(job.get("warnings") or [])
                + ["the studio stopped while this job ran; it resumes from its last finished segment"],
            )
        for job in self.store.list_jobs(UNFINISHED):
            lane = self._lane(job["engine"])
            if only is None or lane is only:
                lane.queue.put_nowait(job["id"])  # a job queued twice runs once: the lane skips it

    async def stop(self) -> None:
        """Stops every lane; a running job is left `interrupted` so the next start resumes it.

        Bounded: a lane thread that does not finish its step within STOP_WAIT_S (a download or
        model load that does not look at the cancel token) is left behind; it is a daemon."""
        self._stopping = True
        for lane in self.lanes.values():
            for token in list(lane.jobs.values()):
                token.set("shutdown")
        tasks = [lane.task for lane in self.lanes.values() if lane.task is not None]
        tasks += [run for lane in self.lanes.values() for run in lane.runs]
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
                    None, lambda e=lane.executor: e.shutdown(True, cancel_futures=True, timeout=STOP_WAIT_S)
                )
                for lane in self.lanes.values()
            )
        )
        starting = getattr(self, "_workers_start", None)
        if starting is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(starting), STOP_WAIT_S)
        stopper = DaemonExecutor("workers-stop")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop.run_in_executor(stopper, self.workers.stop), 2 * STOP_WAIT_S)

    # --- views --------------------------------------------------------------------------------
    def view(self, job: dict) -> JobView:
        s = self.settings
        request = job["request"]
        uploads = [self.store.get_upload(i) or {"id": i, "width": None, "height": None} for i in request["images"]]
        segments = []
        for row in self.store.segments(job["id"]):
            done = row["status"] == SegmentStatus.done
            segments.append(
                SegmentView(
                    index=row["idx"],
                    status=row["status"],
                    progress=1.0 if done else 0.0,
                    frames=row["frames"],
                    video_url=output_url(s, row["path"]) if done else None,
                )
            )
        transitions = self._transitions(job)
        now = time.time()
        started, finished = job.get("started_at"), job.get("finished_at")
        elapsed = ((finished or now) - started) if started else None
        progress = job.get("progress") or 0.0
        eta = None
        if job["status"] == JobStatus.running and elapsed and progress > 0.01:
            eta = round(elapsed * (1 - progress) / progress, 1)
        failed = job["status"] == JobStatus.failed
        return JobView(
            id=job["id"],
            status=job["status"],
            progress=round(progress, 4),
            stage=job.get("stage"),
            error=hide_paths(job.get("error"), s),
            created_at=job["created_at"],
            started_at=started,
            finished_at=finished,
            elapsed_s=None if elapsed is None else round(elapsed, 1),
            eta_s=eta,
            engine=job["engine"],
            images=[
                JobImage(id=u["id"], url=upload_url(u["id"]), width=u.get("width"), height=u.get("height"))
                for u in uploads
            ],
            prompts=job.get("prompts") or [],
            settings=request.get("settings"),
            postprocess=request.get("postprocess"),
            params=job["params"],
            segments=segments,
            transitions=transitions,
            current=job.get("current"),
            preview_url=output_url(s, job.get("preview_path")),
            video_url=output_url(s, job.get("video_path")) if job["status"] == JobStatus.completed else None,
            postprocess_report=job.get("postprocess_report"),
            warnings=job.get("warnings") or [],
            attempts=job.get("attempts") or 0,
            # What went wrong in technical terms (exception type and text); `error` is the
            # sentence a person reads.
            details=(job.get("current") or {}).get("error_details") if failed else None,
            # `error` as a catalogue message, so the page can show it in its own language.
            error_message=hide_paths_in((job.get("current") or {}).get("error_message"), s) if failed else None,
        )

    def _transitions(self, job: dict) -> list[TransitionView]:
        s = self.settings
        by_index: dict[int, list[TakeView]] = {}
        for t in self.store.takes(job["id"]):
            done = t["status"] == TakeStatus.done
            by_index.setdefault(t["idx"], []).append(
                TakeView(
                    take=t["take"],
                    status=t["status"],
                    chosen=t["chosen"],
                    seed=t["seed"],
                    prompt=t["prompt"],
                    seconds=t["seconds"],
                    strength=t["strength"],
                    frames=t["frames"],
                    video_url=output_url(s, t["path"]) if done else None,
                    created_at=t["created_at"],
                    overall=(t["score"] or {}).get("overall"),
                    score=t["score"],
                )
            )
        seams = {x.get("index"): x.get("score") for x in job.get("seams") or [] if isinstance(x, dict)}
        return [
            TransitionView(
                index=i,
                chosen=next((t.take for t in takes if t.chosen), None),
                takes=takes,
                seam_after=seams.get(i + 1),
            )
            for i, takes in sorted(by_index.items())
        ]

    def _require(self, job_id: str) -> dict:
        job = self.store.get_job(job_id)
        if job is None:
            raise JobError("job_not_found", job_id=job_id)
        return job

    def get(self, job_id: str) -> JobView:
        return self._view_or_stub(self._require(job_id))

    def list(self) -> list[JobView]:
        return [self._view_or_stub(j) for j in self.store.list_jobs()]

    def _view_or_stub(self, job: dict) -> JobView:
        # One job that cannot be shown must not hide the others.
        try:
            return self.view(job)
        except Exception as exc:
            log.exception("could not show job %s", job.get("id"))
            engine = job.get("engine")
            return JobView(
                id=str(job.get("id")),
                status=JobStatus.failed,
                stage=BROKEN_STAGE,
                progress=0.0,
                error=messages.bilingual("job_unshowable", {"kind": exc.__class__.__name__}),
                created_at=job.get("created_at") if isinstance(job.get("created_at"), (int, float)) else None,
                engine=engine if isinstance(engine, str) else None,
            )

    def snapshot(self) -> list[JobView]:
        return [self._view_or_stub(j) for j in self.store.list_jobs(UNFINISHED)]

    def _emit(self, kind: type[JobChangeEvent], job_id: str) -> None:
        # An event is news about state already stored: failing to build or send one must not
        # fail the request or the job that caused it.
        try:
            job = self.store.get_job(job_id)
            if job is not None:
                self.ws.publish(kind(job_id=job_id, job=self.view(job)))
        except Exception:
            log.exception("could not send %s for job %s", kind.__name__, job_id)

    def _publish_from_worker(self, event) -> None:
        lane = self._lane_running(event.job_id)
        if lane is not None:
            lane.health.last_beat = time.monotonic()
        self.ws.publish_threadsafe(event)

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
        lanes = {name: lane.status(self.settings.worker_stall_s) for name, lane in self.lanes.items()}
        worst = min(lanes.values(), key=lambda st: _STATE_ORDER.index(st.state))
        errors = [
            (lane.health.last_error_at, st.last_error)
            for lane, st in zip(self.lanes.values(), lanes.values())
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

    # --- requests -----------------------------------------------------------------------------
    def resolve_params(self, images: list[str], settings, engine: str, suggestions=None) -> dict:
        sizes = []
        for upload_id in images:
            row = self.store.get_upload(upload_id)
            if row is None or not upload_path(self.settings, upload_id).exists():
                raise JobError("job_image_missing", upload_id=upload_id)
            sizes.append((row["width"], row["height"]))
        if len(images) > self.settings.max_images_per_job:
            raise JobError("job_too_many_images", limit=self.settings.max_images_per_job)
        if settings.seconds is not None and settings.seconds > self.settings.max_seconds_per_transition:
            raise JobError("job_too_many_seconds", limit=messages.num(self.settings.max_seconds_per_transition))
        takes = getattr(settings, "takes_per_transition", None)
        if takes is not None and takes > self.settings.max_takes_per_transition:
            raise JobError("job_too_many_takes", limit=self.settings.max_takes_per_transition)
        return smart_params.resolve(
            settings, len(images) - 1, sizes, suggestions, fit=self.settings.fit_mode, engine=engine
        )

    async def suggestions_for(self, images: list[str]):
        """Image-analysis defaults for these uploads when they are ready now, else None; never
        raises and never waits on the model (an analysis not ready yet is started for later)."""
        if self.suggest is None or any(self.store.get_upload(i) is None for i in images):
            return None
        try:
            return await self.suggest([upload_path(self.settings, i) for i in images])
        except Exception:  # suggestions are a nicety; a job never fails for them
            log.exception("image analysis failed; using default parameters")
            return None

    def _refuse_unready(self, engine: str) -> None:
        try:
            state = self.engines.state(engine)
        except ValueError:
            raise JobError("unknown_engine", engine=engine) from None
        if runnable(state):
            return
        raise JobError(
            "engine_not_ready",
            reason=not_ready_reason(state, engine),
            extra={"engine": engine, "missing": state.get("missing"), "fix": state.get("fix")},
        )

    async def submit(self, request: JobCreate) -> JobCreated:
        warnings: list[str] = []
        if request.engine:
            engine = request.engine
        else:
            engine = self.engines.default_engine()
            if engine != self.settings.default_engine:
                warnings.append(
                    messages.bilingual(
                        "engine_fallback", {"configured": self.settings.default_engine, "engine": engine}
                    )
                )
        self._refuse_unready(engine)
        suggestions = await self.suggestions_for(request.images)
        params = self.resolve_params(request.images, request.settings, engine, suggestions)
        wants_suggestions = request.settings.seconds is None or request.settings.strength is None
        if suggestions is None and self.suggest is not None and wants_suggestions and len(request.images) > 1:
            warnings.append(ANALYSIS_DEFAULTS_NOTE)
        job_id = secrets.token_hex(8)
        prompts = [{"original": p or "", "english": None} for p in request.pair_prompts()]
        self.store.create_job(
            job_id,
            engine,
            request.model_dump(mode="json"),
            params,
            prompts,
            len(params["segments"]),
            takes=request.settings.takes_per_transition or 1,
        )
        if warnings:
            self.store.update_job(job_id, warnings=warnings)
        self._lane(engine).queue.put_nowait(job_id)
        self._emit(JobQueuedEvent, job_id)
        return JobCreated(id=job_id, status=JobStatus.queued)

    async def cancel(self, job_id: str) -> JobView:
        job = self._require(job_id)
        lane = self._lane_running(job_id)
        if job["status"] in WAITING:
            self.store.update_job(job_id, status=JobStatus.cancelled, stage="cancelled", finished_at=time.time())
            self._emit(JobCancelledEvent, job_id)
        elif job["status"] == JobStatus.running and lane is not None and job_id in lane.jobs:
            lane.jobs[job_id].set("cancel")  # the lane marks it cancelled once the stage stops
        elif job["status"] != JobStatus.running:
            raise JobError("job_already_finished", job_id=job_id, status=job["status"])
        return self.get(job_id)

    async def retry(self, job_id: str) -> JobView:
        """Queues a failed or cancelled job again; its finished segments are kept and reused."""
        job = self._require(job_id)
        if job.get("stage") == BROKEN_STAGE:
            raise JobError("job_broken_no_retry", job_id=job_id, error=job.get("error"))
        if job["status"] not in RETRYABLE:
            raise JobError("job_not_retryable", job_id=job_id, status=job["status"])
        self._refuse_unready(job["engine"])
        self.store.update_job(job_id, status=JobStatus.queued, stage="queued", error=None, finished_at=None)
        self.store.retry_failed_takes(job_id)
        self._lane(job["engine"]).queue.put_nowait(job_id)
        self._emit(JobQueuedEvent, job_id)
        return self.get(job_id)

    # --- takes --------------------------------------------------------------------------------
    def _editable(self, job_id: str, index: int | None = None) -> dict:
        """The job, when its takes may change now: not broken, not queued or running."""
        job = self._require(job_id)
        if job.get("stage") == BROKEN_STAGE:
            raise JobError("job_broken_no_takes", job_id=job_id)
        if job["status"] in UNFINISHED or self._lane_running(job_id) is not None:
            raise JobError("job_busy", job_id=job_id, status=job["status"])
        count = len(job["params"].get("segments") or [])
        if index is not None and not 0 <= index < count:
            raise JobError("transition_not_found", job_id=job_id, index=index, count=count)
        return job

    def _take(self, job_id: str, index: int, take: int) -> dict:
        row = self.store.get_take(job_id, index, take)
        if row is None:
            raise JobError("take_not_found", job_id=job_id, index=index, take=take)
        return row

    def _queue_again(self, job: dict) -> None:
        """Back on its lane: the runner makes the pending takes (none for a rebuild), joins the
        chosen ones and post-processes."""
        self.store.update_job(
            job["id"], status=JobStatus.queued, stage="queued", error=None, finished_at=None, progress=0.0
        )
        self._lane(job["engine"]).queue.put_nowait(job["id"])
        self._emit(JobQueuedEvent, job["id"])

    async def new_take(self, job_id: str, index: int, body: TakeCreate) -> JobView:
        job = self._editable(job_id, index)
        self._refuse_unready(job["engine"])
        if body.seconds is not None and body.seconds > self.settings.max_seconds_per_transition:
            raise JobError("job_too_many_seconds", limit=messages.num(self.settings.max_seconds_per_transition))
        seg = dict(job["params"]["segments"][index])
        if body.seconds is not None:
            sections = smart_params.sections_for(body.seconds)
            frames = smart_params.frames_for(sections)
            seg.update(sections=sections, frames=frames, seconds=round(frames / smart_params.FPS, 3))
        if body.strength is not None:
            seg["strength"] = body.strength
        seg["end_embed_weights"] = smart_params.end_embed_weights(seg["sections"], int(seg["strength"]))
        seg["seed"] = body.seed if body.seed is not None else secrets.randbelow(2**31)
        seg.pop("prompt_english", None)
        prompt = body.prompt.strip() if body.prompt and body.prompt.strip() else None
        self.store.add_take(job_id, index, seg, prompt)
        self._queue_again(job)
        return self.get(job_id)

    async def choose_take(self, job_id: str, index: int, take: int) -> JobView:
        self._editable(job_id, index)
        row = self._take(job_id, index, take)
        if row["status"] != TakeStatus.done:
            raise JobError("take_not_finished", index=index, take=take, status=row["status"])
        self.store.choose_take(job_id, index, take)
        self._emit(JobTakesEvent, job_id)
        return self.get(job_id)

    async def delete_take(self, job_id: str, index: int, take: int) -> JobView:
        self._editable(job_id, index)
        row = self._take(job_id, index, take)
        if len(self.store.takes(job_id, index)) == 1:
            raise JobError("take_is_last", index=index, take=take)
        if row["chosen"]:
            raise JobError("take_is_chosen", index=index, take=take)
        self.store.delete_take(job_id, index, take)
        if row.get("path"):
            resolve_stored(self.settings, row["path"]).unlink(missing_ok=True)
        self._emit(JobTakesEvent, job_id)
        return self.get(job_id)

    async def rebuild(self, job_id: str) -> JobView:
        job = self._editable(job_id)
        chosen = {s["idx"]: s for s in self.store.segments(job_id)}
        for index in range(len(job["params"]["segments"])):
            ready = [
                t
                for t in self.store.takes(job_id, index)
                if t["chosen"] and t["status"] == TakeStatus.done and chosen.get(index, {}).get("path") == t["path"]
            ]
            if not ready or not resolve_stored(self.settings, ready[0]["path"]).exists():
                raise JobError("job_not_rebuildable", job_id=job_id, index=index)
        self._queue_again(job)
        return self.get(job_id)

    async def delete(self, job_id: str) -> None:
        self._require(job_id)
        lane = self._lane_running(job_id)
        if lane is not None and job_id in lane.jobs:
            self._delete_after.add(job_id)
            lane.jobs[job_id].set("cancel")
            return
        self._remove(job_id)

    def _remove(self, job_id: str) -> None:
        self.store.delete_job(job_id)
        shutil.rmtree(output_dir(self.settings, job_id), ignore_errors=True)
        self.ws.publish(JobDeletedEvent(job_id=job_id))

    # --- the lanes ----------------------------------------------------------------------------
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
                lane.health.note_error(_readable(exc))
                log.critical(
                    "the %s job lane stopped unexpectedly; restarting it\n%s", lane.name, traceback.format_exc()
                )
                await asyncio.sleep(STATE_RETRY_DELAYS_S[0])
                # The job in hand when the loop broke is still unfinished in the store.
                await self._with_retries(lane.health, "recover unfinished jobs", self._recover, lane)

    async def _work(self, lane: Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while len(lane.jobs) >= max(1, lane.capacity()):
                lane.freed.clear()
                # Also wakes now and then: a pool's workers may come up while jobs wait.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(lane.freed.wait(), 1.0)
            job_id = await lane.queue.get()
            try:
                job = await self._with_retries(lane.health, "read job", self.store.get_job, job_id)
            except asyncio.CancelledError:
                raise
            if job is None or job["status"] not in WAITING or job_id in lane.jobs:
                continue
            lane.jobs[job_id] = CancelToken()
            lane.health.last_beat = time.monotonic()
            if lane.capacity() <= 1 and not lane.runs:
                await self._run_tracked(lane, loop, job)
            else:
                run = asyncio.create_task(self._run_tracked(lane, loop, job), name=f"job-{job_id}")
                lane.runs.add(run)
                run.add_done_callback(lane.runs.discard)

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
            lane.health.note_error(_readable(exc))
            await self._fail(lane, job_id, exc)
        finally:
            lane.jobs.pop(job_id, None)
            lane.freed.set()
            if job_id in self._delete_after:
                self._delete_after.discard(job_id)
                try:
                    self._remove(job_id)
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
                health.state_error = f"could not {what}: {_readable(exc)}"
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
        self._emit(JobFailedEvent, job_id)

    async def _translate_takes(self, job: dict) -> None:
        """A take's own prompt, in English for the engine, kept in the take's parameters."""
        for take in self.store.takes(job["id"]):
            seg = take.get("params") or {}
            if take["status"] == TakeStatus.done or not take.get("prompt") or seg.get("prompt_english"):
                continue
            english = take["prompt"]
            if self.prompts is not None:
                i = take["idx"]
                images = job["request"]["images"][i : i + 2]
                paths = [upload_path(self.settings, u) for u in images]
                [result] = await self.prompts.english_prompts([take["prompt"]], paths, analysis_wait_s=0.0)
                english = result.english
                for w in result.warnings:
                    self.ws.publish(JobWarningEvent(job_id=job["id"], message=w))
            self.store.set_take_params(job["id"], take["idx"], take["take"], dict(seg, prompt_english=english))

    async def _translate(self, job: dict) -> None:
        await self._translate_takes(job)
        prompts = job.get("prompts") or []
        if all(p.get("english") is not None for p in prompts):
            return
        originals = [p.get("original") or None for p in prompts]
        if self.prompts is None:
            english = [{"original": o or "", "english": o or "", "warnings": []} for o in originals]
        else:
            paths = [upload_path(self.settings, i) for i in job["request"]["images"]]
            # Blank prompts are filled from the image analysis; morph does not read prompts, so it
            # never waits for the analysis model.
            wait_s = self.settings.analysis_load_timeout_s if job["engine"] == "framepack" else 0.0
            results = await self.prompts.english_prompts(originals, paths, analysis_wait_s=wait_s)
            english = [{"original": r.original, "english": r.english, "warnings": list(r.warnings)} for r in results]
        warnings = [w for p in english for w in p.get("warnings", [])]
        for w in warnings:
            self.ws.publish(JobWarningEvent(job_id=job["id"], message=w))
        self.store.update_job(job["id"], prompts=english, warnings=(job.get("warnings") or []) + warnings)

    async def _run_one(self, loop: asyncio.AbstractEventLoop, job: dict) -> None:
        job_id = job["id"]
        lane = self._lane(job["engine"])
        token = lane.jobs[job_id]
        try:
            self.store.update_job(
                job_id,
                status=JobStatus.running,
                stage="prompts",
                error=None,
                started_at=job.get("started_at") or time.time(),
                attempts=(job.get("attempts") or 0) + 1,
            )
            self._emit(JobStartedEvent, job_id)
            await self._translate(self.store.get_job(job_id))
            await loop.run_in_executor(lane.executor, self.workers.before_job, job["engine"])
            await loop.run_in_executor(lane.executor, self.runner.run, job_id, token)
        except JobCancelled:
            if token.reason == "shutdown":
                await self._save(lane, job_id, status=JobStatus.interrupted, stage="interrupted")
                return
            await self._save(lane, job_id, status=JobStatus.cancelled, stage="cancelled", finished_at=time.time())
            self._emit(JobCancelledEvent, job_id)
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
            await self._fail(lane, job_id, exc)
            await self._release_quietly(loop, lane, job["engine"])
        else:
            await self._save(
                lane, job_id, status=JobStatus.completed, stage="done", progress=1.0, finished_at=time.time()
            )
            self._emit(JobCompletedEvent, job_id)

    async def _release_quietly(self, loop: asyncio.AbstractEventLoop, lane: Lane, engine: str) -> None:
        try:
            await loop.run_in_executor(lane.executor, self._release, engine)
        except Exception:
            log.exception("releasing the %s engine after a failed job failed", engine)

    def _release(self, engine: str) -> None:
        self.engines.get(engine).release()


# Pipeline errors whose message is written for the user (what is missing, where to put it). By
# name, so this layer need not import the pipeline's modules (and torch with them).
_USER_FACING = {"PostprocessError", "DownloadError", "RifeCheckpointError", "EngineNotReady"}


def _first_line(text: str, limit: int = 300) -> str:
    line = (text.strip().splitlines() or [""])[0].strip()
    return line if len(line) <= limit else line[:limit] + "…"


def user_error(exc: BaseException, stage: str | None = None) -> tuple[str, str, dict]:
    """(the sentence the page shows in both languages, the technical details kept in the job and
    the log, the same sentence as a catalogue message `{"code", "params"}`).

    Errors that already speak to a person (a missing model file, a refused request) are shown as
    they are; a file or database problem names the file and the cause in plain words; anything
    else is an internal error, shown as such, never as an exception's text or repr."""
    kind = exc.kind if isinstance(exc, RemoteError) else type(exc).__name__
    details = f"{kind}: {_readable(exc)}"
    code, params = _failure(exc, stage)
    return messages.bilingual(code, params), details, messages.message(code, **params)


def _failure(exc: BaseException, stage: str | None) -> tuple[str, dict]:
    where = f" ({stage})" if stage and stage not in ("queued", "running") else ""
    if isinstance(exc, StudioError):
        return exc.code, exc.params
    # An error from a Ray worker may arrive as a RemoteError that names the classes it had there.
    kinds = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, RemoteError):
        kinds |= set(exc.remote_kinds)
    if isinstance(exc, MissingWeightError) or (_USER_FACING | {"MissingWeightError"}) & kinds:
        text = _first_line(str(exc), 1200)
        if "/ " in text and any("\uac00" <= ch <= "\ud7a3" for ch in text):
            return "job_failed_text", {"text": text}  # already in both languages
        return "job_failed_model", {"text": text}
    if isinstance(exc, sqlite3.Error):
        return "job_failed_db", {"cause": _first_line(str(exc)) or "database error"}
    if isinstance(exc, OSError):
        cause = exc.strerror or _first_line(str(exc)) or "input/output error"
        target = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return "job_failed_file", {"where": where, "cause": cause, "target": target}
    if "OutOfMemoryError" in kinds:
        return "job_failed_oom", {}
    return "job_failed_internal", {"where": where}


def _readable(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) < 2000 else text[:2000] + "…"
