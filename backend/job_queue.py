"""The persistent job queue: SQLite holds the state, one worker thread does the GPU work.

Jobs run one at a time on a single dedicated thread (torch and CUDA stay on one thread; the event
loop, API and WebSockets stay responsive). At start-up, a job found `running` was cut off by a
crash or kill: it is marked `interrupted` and queued again, and resumes at its first unfinished
segment. Queued and interrupted jobs are picked up in the order they were created.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from backend import smart_params
from backend.config import Settings
from backend.db import UNFINISHED, Store
from backend.job_runner import CancelToken, JobRunner, output_dir, output_url
from backend.pipeline.engines import Engines
from backend.pipeline.progress import JobCancelled
from backend.schemas import JobCreate
from backend.ws_manager import WebSocketManager

log = logging.getLogger(__name__)


class JobError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
        self.runner = JobRunner(settings, store, engines, ws.publish_threadsafe)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpu-worker")
        self._worker: asyncio.Task | None = None
        self._running: str | None = None
        self._token: CancelToken | None = None
        self._delete_after: set[str] = set()

    # --- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for job in self.store.list_jobs(("running",)):
            self.store.update_job(job["id"], status="interrupted", stage="interrupted",
                                  warnings=(job.get("warnings") or []) + [
                                      "the studio stopped while this job ran; it resumes from its last finished segment"])
        for job in self.store.list_jobs(UNFINISHED):
            self._queue.put_nowait(job["id"])
        self._worker = asyncio.create_task(self._work(), name="job-worker")

    async def stop(self) -> None:
        """Stops the worker; a running job is left `interrupted` so the next start resumes it."""
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
            "stage": job.get("stage"), "error": job.get("error"),
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
        return self.view(self._require(job_id))

    def list(self) -> list[dict]:
        return [self.view(j) for j in self.store.list_jobs()]

    def snapshot(self) -> list[dict]:
        return [self.view(j) for j in self.store.list_jobs(UNFINISHED)]

    def _emit(self, kind: str, job_id: str) -> None:
        job = self.store.get_job(job_id)
        if job is not None:
            self.ws.publish({"type": kind, "job_id": job_id, "job": self.view(job)})

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
    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job_id = await self._queue.get()
            job = self.store.get_job(job_id)
            if job is None or job["status"] not in ("queued", "interrupted"):
                continue
            self._running, self._token = job_id, CancelToken()
            try:
                await self._run_one(loop, job)
            finally:
                self._running, self._token = None, None
                if job_id in self._delete_after:
                    self._delete_after.discard(job_id)
                    self._remove(job_id)

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
        self.store.update_job(job_id, status="running", stage="prompts", error=None,
                              started_at=job.get("started_at") or time.time(),
                              attempts=(job.get("attempts") or 0) + 1)
        self._emit("job.started", job_id)
        try:
            await self._translate(self.store.get_job(job_id))
            await loop.run_in_executor(self._executor, self.runner.run, job_id, token)
        except JobCancelled:
            if token.reason == "shutdown":
                self.store.update_job(job_id, status="interrupted", stage="interrupted")
                return
            self.store.update_job(job_id, status="cancelled", stage="cancelled", finished_at=time.time())
            self._emit("job.cancelled", job_id)
            await loop.run_in_executor(self._executor, self._release, job["engine"])
        except asyncio.CancelledError:
            # The app is shutting down while the thread finishes its step: leave it resumable.
            self.store.update_job(job_id, status="interrupted", stage="interrupted")
            raise
        except Exception as exc:
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self.store.update_job(job_id, status="failed", stage="failed", error=_readable(exc),
                                  finished_at=time.time())
            self._emit("job.failed", job_id)
            await loop.run_in_executor(self._executor, self._release, job["engine"])
        else:
            self.store.update_job(job_id, status="completed", stage="done", progress=1.0,
                                  finished_at=time.time())
            self._emit("job.completed", job_id)

    def _release(self, engine: str) -> None:
        self.engines.get(engine).release()


def _readable(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) < 2000 else text[:2000] + "…"
