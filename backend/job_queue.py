"""The persistent job queue: SQLite holds the state, one worker thread does the GPU work.

Jobs run one at a time on a single dedicated thread (torch and CUDA stay on one thread; the event
loop, API and WebSockets stay responsive). At start-up, a job found `running` was cut off by a
crash or kill: it is marked `interrupted` and queued again, and resumes at its first unfinished
segment. Queued and interrupted jobs are picked up in the order they were created.

The worker must outlive any one job: whatever escapes a job (a bug, an event that cannot be
built, a database write on a full disk) ends that job, never the loop. A job's final state is
written with retries; while it cannot be written the worker waits and says so in
`/api/health` rather than dropping it. A supervisor restarts the loop if it ever ends, and a
worker with no sign of life for `STUDIO_WORKER_STALL_S` during a job is reported as stalled.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import shutil
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backend import smart_params
from backend.config import Settings
from backend.db import BROKEN_STAGE, UNFINISHED, Store
from backend.job_runner import CancelToken, JobRunner, output_dir, output_url
from backend.pipeline.engines import Engines
from backend.pipeline.progress import JobCancelled
from backend.schemas import JobCreate
from backend.utils.redact import hide_paths
from backend.ws_manager import WebSocketManager

log = logging.getLogger(__name__)


class JobError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# Backoff between attempts to write a job's state (seconds); the last value repeats until it works.
STATE_RETRY_DELAYS_S = (0.1, 0.3, 1.0, 3.0)


@dataclass
class WorkerHealth:
    """What `/api/health` says about the job worker."""

    restarts: int = 0
    last_error: str | None = None  # the last error that escaped a job or the loop itself
    state_error: str | None = None  # set while a job's state cannot be written
    last_beat: float = field(default_factory=time.monotonic)


class PromptService(Protocol):
    async def english_prompts(self, prompts: list[str | None], image_paths: list[Path]) -> list[Any]: ...


class JobQueue:
    def __init__(self, settings: Settings, store: Store, ws: WebSocketManager, engines: Engines,
                 prompts: PromptService | None = None, suggest=None) -> None:
        self.settings = settings
        self.store = store
        self.ws = ws
        self.engines = engines
        self.prompts = prompts
        self.suggest = suggest  # async (image_paths) -> smart_params.Suggestions | None
        self.runner = JobRunner(settings, store, engines, self._publish_from_worker)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-worker")
        self._worker: asyncio.Task | None = None
        self._stopping = False
        self._running: str | None = None
        self._token: CancelToken | None = None
        self._delete_after: set[str] = set()
        self.health = WorkerHealth()

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._recover()
        self._worker = asyncio.create_task(self._supervise(), name="job-worker")

    def _recover(self) -> None:
        """Queues every unfinished job; one left `running` was cut off and resumes."""
        for job in self.store.list_jobs(("running",)):
            self.store.update_job(job["id"], status="interrupted", stage="interrupted",
                                  warnings=(job.get("warnings") or []) + [
                                      "the studio stopped while this job ran; it resumes from its last finished segment"])
        for job in self.store.list_jobs(UNFINISHED):
            self._queue.put_nowait(job["id"])  # a job queued twice runs once: the worker skips it

    async def stop(self) -> None:
        """Stops the worker; a running job is left `interrupted` so the next start resumes it."""
        self._stopping = True
        if self._token is not None:
            self._token.set("shutdown")
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

    # --- views --------------------------------------------------------------------------------
    def view(self, job: dict) -> dict:
        s = self.settings
        request = job["request"]
        uploads = [self.store.get_upload(i) or {"id": i, "width": None, "height": None} for i in request["images"]]
        segments = []
        for row in self.store.segments(job["id"]):
            segments.append({
                "index": row["idx"], "status": row["status"],
                "progress": 1.0 if row["status"] == "done" else 0.0, "frames": row["frames"],
                "video_url": output_url(s, row["path"]) if row["status"] == "done" else None,
            })
        now = time.time()
        started, finished = job.get("started_at"), job.get("finished_at")
        elapsed = ((finished or now) - started) if started else None
        progress = job.get("progress") or 0.0
        eta = None
        if job["status"] == "running" and elapsed and progress > 0.01:
            eta = round(elapsed * (1 - progress) / progress, 1)
        return {
            "id": job["id"], "status": job["status"], "progress": round(progress, 4),
            "stage": job.get("stage"), "error": hide_paths(job.get("error"), s),
            "created_at": job["created_at"], "started_at": started, "finished_at": finished,
            "elapsed_s": None if elapsed is None else round(elapsed, 1), "eta_s": eta,
            "engine": job["engine"],
            "images": [{"id": u["id"], "url": f"/files/uploads/{u['id']}.png",
                        "width": u.get("width"), "height": u.get("height")} for u in uploads],
            "prompts": job.get("prompts") or [],
            "settings": request.get("settings"), "postprocess": request.get("postprocess"),
            "params": job["params"], "segments": segments, "current": job.get("current"),
            "preview_url": output_url(s, job.get("preview_path")),
            "video_url": output_url(s, job.get("video_path")) if job["status"] == "completed" else None,
            "postprocess_report": job.get("postprocess_report"),
            "warnings": job.get("warnings") or [],
            "attempts": job.get("attempts") or 0,
        }

    def _require(self, job_id: str) -> dict:
        job = self.store.get_job(job_id)
        if job is None:
            raise JobError(404, f"job {job_id} not found / 작업 {job_id}을(를) 찾을 수 없습니다")
        return job

    def get(self, job_id: str) -> dict:
        return self._view_or_stub(self._require(job_id))

    def list(self) -> list[dict]:
        return [self._view_or_stub(j) for j in self.store.list_jobs()]

    def _view_or_stub(self, job: dict) -> dict:
        # One job that cannot be shown must not hide the others.
        try:
            return self.view(job)
        except Exception as exc:
            log.exception("could not show job %s", job.get("id"))
            return {"id": job.get("id"), "status": "failed", "stage": BROKEN_STAGE, "progress": 0.0,
                    "error": f"this job cannot be shown ({exc.__class__.__name__}); delete it / "
                             f"이 작업을 표시할 수 없습니다: 삭제해 주세요",
                    "created_at": job.get("created_at"), "engine": job.get("engine"), "images": [],
                    "segments": [], "prompts": [], "warnings": [], "attempts": 0}

    def snapshot(self) -> list[dict]:
        return [self._view_or_stub(j) for j in self.store.list_jobs(UNFINISHED)]

    def _emit(self, kind: str, job_id: str) -> None:
        # An event is news about state already stored: failing to build or send one must not
        # fail the request or the job that caused it.
        try:
            job = self.store.get_job(job_id)
            if job is not None:
                self.ws.publish({"type": kind, "job_id": job_id, "job": self.view(job)})
        except Exception:
            log.exception("could not send %s for job %s", kind, job_id)

    def _publish_from_worker(self, event: dict) -> None:
        self.health.last_beat = time.monotonic()
        self.ws.publish_threadsafe(event)

    def worker_status(self) -> dict:
        """The worker as `/api/health` shows it; `ok` is False when jobs cannot make progress."""
        h = self.health
        alive = self._worker is not None and not self._worker.done()
        quiet_s = time.monotonic() - h.last_beat
        stalled = self._running is not None and quiet_s > self.settings.worker_stall_s
        if not alive:
            state = "dead"
        elif h.state_error:
            state = "cannot_save"
        elif stalled:
            state = "stalled"
        else:
            state = "running" if self._running else "idle"
        return {
            "ok": state in ("running", "idle"), "state": state, "running": self._running,
            "queued": self._queue.qsize(), "restarts": h.restarts,
            "quiet_s": round(quiet_s, 1) if self._running else None,
            "last_error": h.last_error, "state_error": h.state_error,
        }

    # --- requests -----------------------------------------------------------------------------
    def resolve_params(self, images: list[str], settings, engine: str, suggestions=None) -> dict:
        sizes = []
        for upload_id in images:
            row = self.store.get_upload(upload_id)
            if row is None or not (self.settings.uploads_dir / f"{upload_id}.png").exists():
                raise JobError(404, f"image {upload_id} not found: upload it again / "
                                    f"이미지 {upload_id}이(가) 없습니다: 다시 올려 주세요")
            sizes.append((row["width"], row["height"]))
        if len(images) > self.settings.max_images_per_job:
            raise JobError(422, f"at most {self.settings.max_images_per_job} images per job / "
                                f"작업당 이미지는 최대 {self.settings.max_images_per_job}장")
        if settings.seconds is not None and settings.seconds > self.settings.max_seconds_per_transition:
            raise JobError(422, f"at most {self.settings.max_seconds_per_transition:g} seconds per transition / "
                                f"전환당 최대 {self.settings.max_seconds_per_transition:g}초")
        return smart_params.resolve(settings, len(images) - 1, sizes, suggestions,
                                    fit=self.settings.fit_mode, engine=engine)

    async def suggestions_for(self, images: list[str]):
        """Image-analysis defaults for these uploads, or None; never raises."""
        if self.suggest is None or any(self.store.get_upload(i) is None for i in images):
            return None
        try:
            return await self.suggest([self.settings.uploads_dir / f"{i}.png" for i in images])
        except Exception:  # suggestions are a nicety; a job never fails for them
            log.exception("image analysis failed; using default parameters")
            return None

    async def submit(self, request: JobCreate) -> dict:
        engine = request.engine or self.settings.default_engine
        suggestions = await self.suggestions_for(request.images)
        params = self.resolve_params(request.images, request.settings, engine, suggestions)
        job_id = secrets.token_hex(8)
        prompts = [{"original": p or "", "english": None} for p in request.pair_prompts()]
        self.store.create_job(job_id, engine, request.model_dump(mode="json"), params, prompts,
                              len(params["segments"]))
        self._queue.put_nowait(job_id)
        self._emit("job.queued", job_id)
        return {"id": job_id, "status": "queued"}

    async def cancel(self, job_id: str) -> dict:
        job = self._require(job_id)
        if job["status"] in ("queued", "interrupted"):
            self.store.update_job(job_id, status="cancelled", stage="cancelled", finished_at=time.time())
            self._emit("job.cancelled", job_id)
        elif job["status"] == "running" and self._running == job_id and self._token is not None:
            self._token.set("cancel")  # the worker marks it cancelled once the stage stops
        elif job["status"] != "running":
            raise JobError(409, f"job {job_id} is already {job['status']} / 이미 끝난 작업입니다 ({job['status']})")
        return self.get(job_id)

    async def retry(self, job_id: str) -> dict:
        """Queues a failed or cancelled job again; its finished segments are kept and reused."""
        job = self._require(job_id)
        if job.get("stage") == BROKEN_STAGE:
            raise JobError(409, f"job {job_id} cannot be retried: {job.get('error')}")
        if job["status"] not in ("failed", "cancelled"):
            raise JobError(409, f"job {job_id} is {job['status']}: only failed or cancelled jobs can be retried / "
                                f"실패하거나 취소된 작업만 다시 시도할 수 있습니다")
        self.store.update_job(job_id, status="queued", stage="queued", error=None, finished_at=None)
        self._queue.put_nowait(job_id)
        self._emit("job.queued", job_id)
        return self.get(job_id)

    async def delete(self, job_id: str) -> None:
        self._require(job_id)
        if self._running == job_id and self._token is not None:
            self._delete_after.add(job_id)
            self._token.set("cancel")
            return
        self._remove(job_id)

    def _remove(self, job_id: str) -> None:
        self.store.delete_job(job_id)
        shutil.rmtree(output_dir(self.settings, job_id), ignore_errors=True)
        self.ws.publish({"type": "job.deleted", "job_id": job_id})

    # --- the worker ---------------------------------------------------------------------------
    async def _supervise(self) -> None:
        """Runs the worker loop and starts it again should it ever end by an error."""
        while True:
            try:
                await self._work()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - the loop must come back whatever broke it
                if self._stopping:
                    raise
                self.health.restarts += 1
                self.health.last_error = _readable(exc)
                log.critical("the job worker stopped unexpectedly; restarting it\n%s", traceback.format_exc())
                await asyncio.sleep(STATE_RETRY_DELAYS_S[0])
                # The job in hand when the loop broke is still unfinished in the store.
                await self._with_retries("recover unfinished jobs", self._recover)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job_id = await self._queue.get()
            try:
                job = await self._with_retries("read job", self.store.get_job, job_id)
            except asyncio.CancelledError:
                raise
            if job is None or job["status"] not in ("queued", "interrupted"):
                continue
            self._running, self._token = job_id, CancelToken()
            self.health.last_beat = time.monotonic()
            try:
                await self._run_one(loop, job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A failure outside the stages themselves (an event, a state write): the job ends
                # failed and the loop goes on to the next one.
                log.error("job %s failed outside its stages:\n%s", job_id, traceback.format_exc())
                self.health.last_error = _readable(exc)
                await self._save(job_id, status="failed", stage="failed", error=_readable(exc),
                                 finished_at=time.time())
                self._emit("job.failed", job_id)
            finally:
                self._running, self._token = None, None
                if job_id in self._delete_after:
                    self._delete_after.discard(job_id)
                    try:
                        self._remove(job_id)
                    except Exception:
                        log.exception("could not delete job %s after cancelling it", job_id)

    async def _with_retries(self, what: str, fn, *args, **kwargs):
        """Calls a store method until it works; while it fails, health says why."""
        for attempt in itertools.count():
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if attempt == 0:
                    log.error("could not %s (%s); retrying until it works", what, exc)
                self.health.state_error = f"could not {what}: {_readable(exc)}"
                await asyncio.sleep(STATE_RETRY_DELAYS_S[min(attempt, len(STATE_RETRY_DELAYS_S) - 1)])
                continue
            if self.health.state_error:
                log.warning("%s worked again after %d failed attempts", what, attempt)
                self.health.state_error = None
            return result

    async def _save(self, job_id: str, **fields) -> None:
        """Writes a job's state, retrying until it is stored: a final state is never dropped."""
        await self._with_retries(f"save job {job_id}", self.store.update_job, job_id, **fields)

    async def _translate(self, job: dict) -> None:
        prompts = job.get("prompts") or []
        if all(p.get("english") is not None for p in prompts):
            return
        originals = [p.get("original") or None for p in prompts]
        if self.prompts is None:
            english = [{"original": o or "", "english": o or "", "warnings": []} for o in originals]
        else:
            paths = [self.settings.uploads_dir / f"{i}.png" for i in job["request"]["images"]]
            results = await self.prompts.english_prompts(originals, paths)
            english = [{"original": r.original, "english": r.english, "warnings": list(r.warnings)} for r in results]
        warnings = [w for p in english for w in p.get("warnings", [])]
        for w in warnings:
            self.ws.publish({"type": "job.warning", "job_id": job["id"], "message": w})
        self.store.update_job(job["id"], prompts=english, warnings=(job.get("warnings") or []) + warnings)

    async def _run_one(self, loop: asyncio.AbstractEventLoop, job: dict) -> None:
        job_id = job["id"]
        token = self._token
        try:
            self.store.update_job(job_id, status="running", stage="prompts", error=None,
                                  started_at=job.get("started_at") or time.time(),
                                  attempts=(job.get("attempts") or 0) + 1)
            self._emit("job.started", job_id)
            await self._translate(self.store.get_job(job_id))
            await loop.run_in_executor(self._executor, self.runner.run, job_id, token)
        except JobCancelled:
            if token.reason == "shutdown":
                await self._save(job_id, status="interrupted", stage="interrupted")
                return
            await self._save(job_id, status="cancelled", stage="cancelled", finished_at=time.time())
            self._emit("job.cancelled", job_id)
            await self._release_quietly(loop, job["engine"])
        except asyncio.CancelledError:
            # The app is shutting down while the thread finishes its step: leave it resumable.
            # One attempt only: shutdown must not wait on a failing disk (start-up recovers a job
            # left `running` the same way).
            try:
                self.store.update_job(job_id, status="interrupted", stage="interrupted")
            except Exception:
                log.exception("could not mark job %s interrupted; it is recovered at the next start", job_id)
            raise
        except Exception as exc:
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            await self._save(job_id, status="failed", stage="failed", error=_readable(exc),
                             finished_at=time.time())
            self._emit("job.failed", job_id)
            await self._release_quietly(loop, job["engine"])
        else:
            await self._save(job_id, status="completed", stage="done", progress=1.0,
                             finished_at=time.time())
            self._emit("job.completed", job_id)

    async def _release_quietly(self, loop: asyncio.AbstractEventLoop, engine: str) -> None:
        try:
            await loop.run_in_executor(self._executor, self._release, engine)
        except Exception:
            log.exception("releasing the %s engine after a failed job failed", engine)

    def _release(self, engine: str) -> None:
        self.engines.get(engine).release()


def _readable(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) < 2000 else text[:2000] + "…"
