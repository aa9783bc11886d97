"""The job queue's commands: submit, cancel, retry, the takes (re-roll, choose, delete, rebuild),
delete, and reading jobs. SQLite holds the state; the lanes (`lanes.py`) do the work.

Submitting never waits on a model: the engine's readiness is read from disk, image-analysis
suggestions are used only when they are already computed (otherwise the job says it used the
defaults), and everything else happens in the lane. A command changes stored state, puts the job
on its lane when there is work, and sends the job's view as an event.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import sqlite3
import time
from typing import Any

from pydantic import ValidationError

from backend.contracts import messages
from backend.contracts.errors import JobError, StudioError
from backend.contracts.events import JobCancelledEvent, JobEditedEvent, JobMovedEvent, JobQueuedEvent, JobTakesEvent
from backend.contracts.models import (
    RETRYABLE,
    UNFINISHED,
    WAITING,
    JobCreate,
    JobCreated,
    JobEdit,
    JobMove,
    JobSettings,
    JobStatus,
    JobView,
    KeyframeChoice,
    MoveBefore,
    TakeCreate,
    TakeStatus,
    WorkerStatus,
)
from backend.jobs import params as smart_params
from backend.jobs.cluster.local import LocalWorkers
from backend.jobs.cluster.task import Workers
from backend.jobs.fanout import WebSocketManager
from backend.jobs.lanes import Lanes, PromptService
from backend.jobs.runner import JobRunner
from backend.jobs.store import BROKEN_STAGE, Store, StoreError
from backend.jobs.transition_options import (
    check_end_influence,
    check_engine,
    check_keyframes_engine,
    check_loras,
    place_keyframes,
    plan_keyframes,
    plan_prompts,
    prompt_sections,
    set_loras,
)
from backend.jobs.views import JobViews
from backend.pipeline.engines import Engines, not_ready_reason, runnable
from backend.utils.config import Settings
from backend.utils.files import partial_path, resolve_stored, tagged_path, upload_path
from backend.utils.storage import StorageFull, check_space, is_disk_full

log = logging.getLogger(__name__)

ANALYSIS_DEFAULTS_NOTE = messages.bilingual("analysis_defaults_used")

__all__ = ["JobError", "JobQueue"]


def storing(command):
    """A command's writes meet the data folder: a full disk answers 507 (`disk_full`), any other
    failing folder (read-only, gone, a damaged database) 503 naming it, never a bare 500."""

    @functools.wraps(command)
    async def run(self: JobQueue, *args, **kwargs):
        try:
            return await command(self, *args, **kwargs)
        except StudioError:
            raise
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc):
                raise StorageFull() from exc
            log.error("%s could not reach the data folder: %s", command.__name__, exc)
            raise StoreError(
                "store_unwritable", path=str(self.store.path), cause=str(exc), folder=str(self.settings.data_dir)
            ) from exc

    return run


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
        # async (image_paths) -> smart_params.Suggestions | None, answering at once: None when
        # the analysis is not ready yet.
        self.suggest = suggest
        self.workers: Workers = workers or LocalWorkers(settings, engines)
        self.views = JobViews(settings, store, ws)
        self.lanes = Lanes(settings, store, self.views, engines, self.workers, prompts)

    @property
    def runner(self) -> JobRunner:
        return self.lanes.runner

    # --- life cycle and health ------------------------------------------------------------------
    async def start(self) -> None:
        await self.lanes.start()

    async def stop(self) -> None:
        await self.lanes.stop()

    def worker_status(self) -> WorkerStatus:
        return self.lanes.worker_status()

    def cluster_view(self) -> dict[str, Any]:
        return self.lanes.cluster_view()

    # --- reading --------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobView:
        return self.views.get(job_id)

    def all_jobs(self) -> list[JobView]:
        return self.views.all_jobs()

    def snapshot(self) -> list[JobView]:
        return self.views.snapshot()

    # --- requests -------------------------------------------------------------------------------
    def resolve_params(
        self, images: list[str], sliders: JobSettings, engine: str, suggestions=None, loop: bool = False
    ) -> dict:
        sizes = []
        for upload_id in images:
            row = self.store.get_upload(upload_id)
            if row is None or not upload_path(self.settings, upload_id).exists():
                raise JobError("job_image_missing", upload_id=upload_id)
            sizes.append((row["width"], row["height"]))
        if len(images) > self.settings.max_images_per_job:
            raise JobError("job_too_many_images", limit=self.settings.max_images_per_job)
        self.check_sliders(sliders)
        check_end_influence(engine, sliders.end_influence)
        pairs = len(images) - 1 + (1 if loop else 0)
        return smart_params.resolve(
            sliders,
            pairs,
            sizes,
            suggestions,
            fit=self.settings.fit_mode,
            engine=engine,
            loop=loop,
            wan_model=self.settings.wan_model,
        )

    def upload_exists(self, upload_id: str) -> bool:
        return self.store.get_upload(upload_id) is not None and upload_path(self.settings, upload_id).exists()

    def check_sliders(self, sliders: JobSettings) -> None:
        """The sliders against this server's limits (settings, not the models' constants)."""
        if sliders.seconds is not None and sliders.seconds > self.settings.max_seconds_per_transition:
            raise JobError("job_too_many_seconds", limit=messages.num(self.settings.max_seconds_per_transition))
        takes = getattr(sliders, "takes_per_transition", None)
        if takes is not None and takes > self.settings.max_takes_per_transition:
            raise JobError("job_too_many_takes", limit=self.settings.max_takes_per_transition)

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

    async def _plan(self, request: JobCreate) -> tuple[str, dict, list, list[str]]:
        """What a request becomes, the same for a new job and an edited queued one: its engine,
        resolved parameters, prompts and warnings. Refuses what submit refuses."""
        warnings: list[str] = []
        engine: str
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
        check_engine(engine, request.settings.end_influence, request.pair_prompts())
        check_keyframes_engine(engine, [k.transition for k in request.keyframes])
        loras = check_loras(self.settings, engine, request.settings.loras)
        self._refuse_unready(engine)
        # A loop's wrap pair (last → first) is analysed like the others.
        sequence = request.images + request.images[:1] if request.loop else request.images
        suggestions = await self.suggestions_for(sequence)
        params = self.resolve_params(request.images, request.settings, engine, suggestions, loop=request.loop)
        wants_suggestions = request.settings.seconds is None or request.settings.strength is None
        if suggestions is None and self.suggest is not None and wants_suggestions and len(request.images) > 1:
            warnings.append(ANALYSIS_DEFAULTS_NOTE)
        plan_prompts(engine, params, request.pair_prompts())
        plan_keyframes(engine, params, request.keyframes, self.upload_exists)
        for seg in params["segments"]:
            set_loras(seg, loras)
        prompts = [{"original": p or "", "english": None} for p in request.pair_prompts()]
        return engine, params, prompts, warnings

    @storing
    async def submit(self, request: JobCreate) -> JobCreated:
        engine, params, prompts, warnings = await self._plan(request)
        job_id = secrets.token_hex(8)
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
        self.lanes.put(engine, job_id)
        self.views.emit(JobQueuedEvent, job_id)
        return JobCreated(id=job_id, status=JobStatus.queued)

    @storing
    async def cancel(self, job_id: str) -> JobView:
        job = self.views.require(job_id)
        if job["status"] in WAITING:
            self.store.update_job(job_id, status=JobStatus.cancelled, stage="cancelled", finished_at=time.time())
            self.views.emit(JobCancelledEvent, job_id)
        elif job["status"] == JobStatus.running and self.lanes.cancel_running(job_id):
            pass  # the lane marks it cancelled once the stage stops
        elif job["status"] != JobStatus.running:
            raise JobError("job_already_finished", job_id=job_id, status=job["status"])
        return self.views.get(job_id)

    @storing
    async def retry(self, job_id: str) -> JobView:
        """Queues a failed or cancelled job again; its finished segments are kept and reused."""
        job = self.views.require(job_id)
        if job.get("stage") == BROKEN_STAGE:
            raise JobError("job_broken_no_retry", job_id=job_id, error=job.get("error"))
        if job["status"] not in RETRYABLE:
            raise JobError("job_not_retryable", job_id=job_id, status=job["status"])
        self._refuse_unready(job["engine"])
        self.store.update_job(job_id, status=JobStatus.queued, stage="queued", error=None, finished_at=None)
        self.store.to_back(job_id)
        self.store.retry_failed_takes(job_id)
        self.lanes.put(job["engine"], job_id)
        self.views.emit(JobQueuedEvent, job_id)
        return self.views.get(job_id)

    def _editable(self, job_id: str, index: int | None = None) -> dict:
        """The job, when its takes may change now: not broken, not queued or running."""
        job = self.views.require(job_id)
        if job.get("stage") == BROKEN_STAGE:
            raise JobError("job_broken_no_takes", job_id=job_id)
        if job["status"] in UNFINISHED or self.lanes.running_lane(job_id) is not None:
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

    async def _check_space(self) -> None:
        """The free-space floor and the quota that new uploads and jobs obey (507)."""
        await asyncio.to_thread(check_space, self.settings)

    def _queue_again(self, job: dict, make_takes: bool = True) -> None:
        """Back on its lane: the runner makes the pending takes (none for a rebuild: `make_takes`
        False, so a take left pending is never made by it), joins the chosen ones and
        post-processes. The job's finished video stays shown meanwhile."""
        self.store.update_job(
            job["id"],
            status=JobStatus.queued,
            stage="queued",
            error=None,
            finished_at=None,
            progress=0.0,
            current={"run": "takes" if make_takes else "rebuild"},
        )
        self.store.to_back(job["id"])
        self.lanes.put(job["engine"], job["id"])
        self.views.emit(JobQueuedEvent, job["id"])

    @storing
    async def new_take(self, job_id: str, index: int, body: TakeCreate) -> JobView:
        job = self._editable(job_id, index)
        check_end_influence(job["engine"], body.end_influence)  # a timed prompt: prompt_sections below
        loras = None if body.loras is None else check_loras(self.settings, job["engine"], body.loras)
        self._refuse_unready(job["engine"])
        limit = self.settings.max_takes_kept
        if len(self.store.takes(job_id, index)) >= limit:
            raise JobError("take_limit_reached", job_id=job_id, index=index, limit=limit)
        await self._check_space()
        if body.seconds is not None and body.seconds > self.settings.max_seconds_per_transition:
            raise JobError("job_too_many_seconds", limit=messages.num(self.settings.max_seconds_per_transition))
        seg = smart_params.retake(
            job["engine"], job["params"]["segments"][index], body.seconds, body.strength, body.end_influence
        )
        seg["seed"] = body.seed if body.seed is not None else secrets.randbelow(2**31)
        if loras is not None:  # left out: the transition's own; [] is kept (the runner merges the take over them)
            seg["loras"] = loras
        seg.pop("prompt_english", None)
        prompt = body.prompt.strip() if body.prompt and body.prompt.strip() else None
        # The take's own prompt, else the pair's, against the take's (maybe new) length.
        pair = (job.get("prompts") or [])[index : index + 1]
        own = (
            prompt if prompt is not None else (pair[0].get("original") if pair and isinstance(pair[0], dict) else None)
        )
        seg.pop("prompt_sections", None)
        placed = prompt_sections(job["engine"], index, own, seg)
        if placed is not None:
            seg["prompt_sections"] = placed
        self._retake_keyframes(job, index, seg, body)
        self.store.add_take(job_id, index, seg, prompt)
        self._queue_again(job)
        return self.views.get(job_id)

    def _retake_keyframes(self, job: dict, index: int, seg: dict, body: TakeCreate) -> None:
        """A take's keyframes: the asked ones, else the transition's own, placed again on the take's
        (maybe new) length. The take's parameters hold them even when empty, so a take without
        keyframes of a transition that has some stays without."""
        own = [KeyframeChoice(image=k["image"], at=k["at"]) for k in seg.get("keyframes") or []]
        choices = body.keyframes if body.keyframes is not None else own
        placed = place_keyframes(job["engine"], index, seg, choices, self.upload_exists)
        if placed or "keyframes" in seg:
            seg["keyframes"] = placed

    @storing
    async def choose_take(self, job_id: str, index: int, take: int) -> JobView:
        self._editable(job_id, index)
        row = self._take(job_id, index, take)
        if row["status"] != TakeStatus.done:
            raise JobError("take_not_finished", index=index, take=take, status=row["status"])
        self.store.choose_take(job_id, index, take)
        self.views.emit(JobTakesEvent, job_id)
        return self.views.get(job_id)

    @storing
    async def delete_take(self, job_id: str, index: int, take: int) -> JobView:
        self._editable(job_id, index)
        row = self._take(job_id, index, take)
        if len(self.store.takes(job_id, index)) == 1:
            raise JobError("take_is_last", index=index, take=take)
        if row["chosen"]:
            raise JobError("take_is_chosen", index=index, take=take)
        self.store.delete_take(job_id, index, take)
        if row.get("path"):
            path = resolve_stored(self.settings, row["path"])
            for leftover in (path, partial_path(path), tagged_path(path)):
                leftover.unlink(missing_ok=True)
            job = self.store.get_job(job_id) or {}
            if job.get("preview_path") == row["path"]:  # the preview showed this take: show the pick
                chosen = next((s for s in self.store.segments(job_id) if s["idx"] == index), None)
                self.store.update_job(job_id, preview_path=(chosen or {}).get("path"))
        self.views.emit(JobTakesEvent, job_id)
        return self.views.get(job_id)

    @storing
    async def rebuild(self, job_id: str) -> JobView:
        job = self._editable(job_id)
        await self._check_space()
        chosen = {s["idx"]: s for s in self.store.segments(job_id)}
        for index in range(len(job["params"]["segments"])):
            ready = [
                t
                for t in self.store.takes(job_id, index)
                if t["chosen"] and t["status"] == TakeStatus.done and chosen.get(index, {}).get("path") == t["path"]
            ]
            if not ready or not resolve_stored(self.settings, ready[0]["path"]).exists():
                raise JobError("job_not_rebuildable", job_id=job_id, index=index)
        self._queue_again(job, make_takes=False)
        return self.views.get(job_id)

    @storing
    async def delete(self, job_id: str) -> None:
        self.views.require(job_id)
        if not self.lanes.cancel_running(job_id, then_delete=True):
            self.lanes.remove(job_id)

    # --- the queue in the user's hands -------------------------------------------------------------
    def _waiting_ids(self) -> list[str]:
        return [r["id"] for r in self.store.waiting_order(WAITING) if self.lanes.running_lane(r["id"]) is None]

    def _queued(self, job_id: str) -> dict:
        """The job, while it waits in the queue and has not started (409 `job_not_queued` otherwise)."""
        job = self.views.require(job_id)
        if job["status"] not in WAITING or self.lanes.running_lane(job_id) is not None:
            raise JobError("job_not_queued", job_id=job_id, status=job["status"])
        return job

    @storing
    async def move(self, job_id: str, body: JobMove) -> list[JobView]:
        """Moves a waiting job one place up or down, or just before another waiting job. Answers
        the waiting jobs in their new order (first to run first)."""
        self._queued(job_id)
        order = self._waiting_ids()
        index = order.index(job_id)
        if isinstance(body, MoveBefore):
            if body.before == job_id:
                target = index
            else:
                self._queued(body.before)
                order.remove(job_id)
                target = order.index(body.before)
                order.insert(target, job_id)
        else:
            target = max(0, index - 1) if body.direction == "up" else min(len(order) - 1, index + 1)
            order.insert(target, order.pop(index))
        try:
            changed = self.store.reorder(order, WAITING)
        except KeyError:  # a job started or ended between the read and the write: ask again
            raise JobError("queue_changed") from None
        for moved in changed:
            self.views.emit(JobMovedEvent, moved)
        return [self.views.get(i) for i in order]

    @storing
    async def edit(self, job_id: str, body: JobEdit) -> JobView:
        """A queued job's sliders, prompts, engine or post-processing changed before it starts: the
        parameters are resolved again exactly as at submit; its place in the queue stays."""
        job = self._queued(job_id)
        if job["status"] != JobStatus.queued or job.get("video_path") or (job.get("current") or {}).get("run"):
            raise JobError("job_not_queued", job_id=job_id, status=job["status"])
        merged = {**job["request"], **body.model_dump(mode="json", exclude_unset=True)}
        try:
            request = JobCreate.model_validate({**merged, "images": job["request"]["images"]})
        except ValidationError as exc:  # prompts that no longer fit the job's pairs
            errors = "; ".join(str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors())
            raise JobError("invalid_request", errors=errors) from None
        engine, params, prompts, warnings = await self._plan(request)
        # No await since the check above could be stale: the store checks again in its transaction.
        if not self.store.replan_queued(
            job_id,
            engine,
            request.model_dump(mode="json"),
            params,
            prompts,
            len(params["segments"]),
            takes=request.settings.takes_per_transition or 1,
            warnings=warnings,
        ):
            raise JobError("job_not_queued", job_id=job_id, status=(self.store.get_job(job_id) or job)["status"])
        if engine != job["engine"]:
            self.lanes.put(engine, job_id)
        self.views.emit(JobEditedEvent, job_id)
        return self.views.get(job_id)

    @storing
    async def cancel_queued(self) -> list[str]:
        """Cancels every job that waits (queued or interrupted); running jobs go on. Answers the ids."""
        cancelled = []
        for job_id in self._waiting_ids():
            self.store.update_job(job_id, status=JobStatus.cancelled, stage="cancelled", finished_at=time.time())
            self.views.emit(JobCancelledEvent, job_id)
            cancelled.append(job_id)
        return cancelled
