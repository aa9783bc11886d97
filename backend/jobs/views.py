"""How a job looks from outside: the `JobView` every route and event carries, built from its rows.

A view is read-only: it never changes a job. `emit` sends a job's view as an event after its state
was stored (news about stored state; failing to build or send it never fails what caused it).
"""

from __future__ import annotations

import logging
import time

from backend.contracts import messages
from backend.contracts.errors import JobError
from backend.contracts.events import JobChangeEvent
from backend.contracts.models import (
    UNFINISHED,
    JobImage,
    JobStatus,
    JobView,
    SegmentStatus,
    SegmentView,
    TakeStatus,
    TakeView,
    TransitionView,
)
from backend.jobs.fanout import WebSocketManager
from backend.jobs.store import BROKEN_STAGE, Store
from backend.utils.config import Settings
from backend.utils.files import output_url, upload_url
from backend.utils.redact import hide_paths, hide_paths_in

log = logging.getLogger(__name__)


class JobViews:
    def __init__(self, settings: Settings, store: Store, ws: WebSocketManager) -> None:
        self.settings = settings
        self.store = store
        self.ws = ws

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
        transitions = self.transitions(job)
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
            # A job that has its video keeps showing it while a re-roll or rebuild runs.
            video_url=output_url(s, job.get("video_path")),
            postprocess_report=job.get("postprocess_report"),
            warnings=job.get("warnings") or [],
            attempts=job.get("attempts") or 0,
            position=job.get("position"),
            # What went wrong in technical terms (exception type and text); `error` is the
            # sentence a person reads.
            details=(job.get("current") or {}).get("error_details") if failed else None,
            # `error` as a catalogue message, so the page can show it in its own language.
            error_message=hide_paths_in((job.get("current") or {}).get("error_message"), s) if failed else None,
        )

    def transitions(self, job: dict) -> list[TransitionView]:
        s = self.settings
        by_index: dict[int, list[TakeView]] = {}
        planned = (job.get("params") or {}).get("segments") or []
        for t in self.store.takes(job["id"]):
            own = t["params"] or {}
            # A take's keyframes: its own when its parameters say (a re-roll), else its transition's.
            transition = planned[t["idx"]] if t["idx"] < len(planned) else {}
            keyframes = own["keyframes"] if "keyframes" in own else transition.get("keyframes") or []
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
                    loras=(t["params"] or {}).get("loras") or [],
                    keyframes=[{**k, "url": upload_url(k["image"])} for k in keyframes],
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

    def require(self, job_id: str) -> dict:
        job = self.store.get_job(job_id)
        if job is None:
            raise JobError("job_not_found", job_id=job_id)
        return job

    def get(self, job_id: str) -> JobView:
        return self.view_or_stub(self.require(job_id))

    def all_jobs(self) -> list[JobView]:
        return [self.view_or_stub(j) for j in self.store.list_jobs()]

    def view_or_stub(self, job: dict) -> JobView:
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
        return [self.view_or_stub(j) for j in self.store.list_jobs(UNFINISHED)]

    def emit(self, kind: type[JobChangeEvent], job_id: str) -> None:
        # An event is news about state already stored: failing to build or send one must not
        # fail the request or the job that caused it.
        try:
            job = self.store.get_job(job_id)
            if job is not None:
                self.ws.publish(kind(job_id=job_id, job=self.view(job)))  # type: ignore[call-arg]  # each subclass fixes `type`
        except Exception:
            log.exception("could not send %s for job %s", kind.__name__, job_id)

    def publish(self, event) -> None:
        """Sends an event from the event loop."""
        self.ws.publish(event)

    def publish_threadsafe(self, event) -> None:
        """Sends an event from a worker thread."""
        self.ws.publish_threadsafe(event)
