"""Exports of a finished job's video or of one take: checked, planned, made on export threads
(never on the event loop), their progress sent over `/ws` as `job.export` events.

Files go to `outputs/<job>/exports/<export_id><ext>` (deleted with the job), each with a small
`<export_id>.json` beside it once it is done or failed, so `GET` still answers after a restart.
The pixel work is `backend.pipeline.export_encoding`; this module knows jobs, limits and state.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from pathlib import Path

from backend.contracts.errors import StudioError
from backend.contracts.events import JobExportEvent
from backend.contracts.models import EXPORT_FORMATS, ExportCreate, ExportState, ExportView, JobStatus, JobView
from backend.pipeline import export_encoding as encode
from backend.utils.config import Settings
from backend.utils.daemon_executor import DaemonExecutor
from backend.utils.files import export_url, exports_dir, output_for_url
from backend.utils.video_io import probe

log = logging.getLogger(__name__)

GIF_DEFAULT_WIDTH = 480
GIF_DEFAULT_FPS = 15.0
MIN_WIDTH = 16
MIN_FPS = 1.0
PROGRESS_EVERY_S = 0.2
_EXPORT_ID = re.compile(r"[0-9a-f]{12}")
_PENDING = (ExportState.queued, ExportState.running)


def _download_name(job_id: str, body: ExportCreate, frame: int | None) -> str:
    base = f"job-{job_id[:8]}"
    if body.take is not None:
        base += f"-transition{body.take.index + 1}-take{body.take.take}"
    suffix = {
        "webm": ".webm",
        "gif": ".gif",
        "frames_zip": "-frames.zip",
        "frame_png": f"-frame{frame}.png",
        "pingpong_mp4": "-pingpong.mp4",
    }[body.format]
    return base + suffix


class ExportService:
    def __init__(self, settings: Settings, ws) -> None:
        self.settings = settings
        self.ws = ws
        self._executor = DaemonExecutor("exports", settings.export_workers)
        self._lock = threading.Lock()
        self._views: dict[str, ExportView] = {}

    # --- checks -----------------------------------------------------------------------------
    def _source(self, job: JobView, body: ExportCreate) -> Path:
        """The stored file to export: the job's final video, or one take's."""
        if body.take is None:
            if job.status != JobStatus.completed or not job.video_url:
                raise StudioError("export_job_not_finished", job_id=job.id, status=str(job.status))
            url = job.video_url
        else:
            index, number = body.take.index, body.take.take
            if not 0 <= index < len(job.transitions):
                raise StudioError("transition_not_found", job_id=job.id, index=index, count=len(job.transitions))
            take = next((t for t in job.transitions[index].takes if t.take == number), None)
            if take is None:
                raise StudioError("take_not_found", job_id=job.id, index=index, take=number)
            if str(take.status) != "done" or not take.video_url:
                raise StudioError("export_take_not_finished", take=number, index=index, status=str(take.status))
            url = take.video_url
        path = output_for_url(self.settings, url)
        if path is None or not path.is_file():
            raise StudioError("export_source_missing", name=Path(url).name)
        return path

    def _plan(
        self, job_id: str, export_id: str, body: ExportCreate, source: Path
    ) -> tuple[encode.ExportPlan, int | None]:
        info = probe(source)
        gif = body.format == "gif"
        max_width = self.settings.export_gif_max_width if gif else self.settings.export_max_width
        width = body.width
        if width is None:
            width = min(info.width, GIF_DEFAULT_WIDTH) if gif else min(info.width, max_width)
        elif not MIN_WIDTH <= width <= max_width:
            raise StudioError("export_bad_width", width=width, min=MIN_WIDTH, max=max_width)
        max_fps = self.settings.export_gif_max_fps if gif else self.settings.export_max_fps
        fps = body.fps
        if fps is None:
            fps = min(info.fps, GIF_DEFAULT_FPS if gif else max_fps)
        elif not MIN_FPS <= fps <= max_fps:
            raise StudioError("export_bad_fps", fps=f"{fps:g}", min=f"{MIN_FPS:g}", max=f"{max_fps:g}")
        fps = min(fps, info.fps)  # never more frames than the video has
        frame: int | None = None
        if body.format == "frame_png":
            last = info.frames - 1
            wanted: object = body.frame
            if body.frame is None or body.frame == "last":
                wanted = last
            elif body.frame == "first":
                wanted = 0
            if not isinstance(wanted, int) or not 0 <= wanted <= last:
                raise StudioError("export_bad_frame", frame=str(body.frame), last=last)
            frame = wanted
        even = body.format in ("webm", "pingpong_mp4")
        w, h = encode.scaled_size(info.width, info.height, width, even)
        target = exports_dir(self.settings, job_id) / (export_id + encode.EXTENSIONS[body.format])
        plan = encode.ExportPlan(
            format=body.format,
            source=source,
            target=target,
            width=w,
            height=h,
            source_fps=info.fps,
            fps=fps,
            source_frames=info.frames,
            frame=frame,
        )
        return plan, frame

    # --- state ------------------------------------------------------------------------------
    def _set(self, view: ExportView, **changes) -> ExportView:
        with self._lock:
            view = view.model_copy(update=changes)
            self._views[view.id] = view
        return view

    def _publish(self, view: ExportView) -> None:
        self.ws.publish_threadsafe(JobExportEvent(job_id=view.job_id, export=view))

    def _manifest(self, job_id: str, export_id: str) -> Path:
        return exports_dir(self.settings, job_id) / f"{export_id}.json"

    def create(self, job: JobView, body: ExportCreate) -> ExportView:
        """Checks the request, plans the export and queues it (blocking: probes the file)."""
        if body.format not in EXPORT_FORMATS:
            raise StudioError("export_unknown_format", format=body.format, formats=", ".join(EXPORT_FORMATS))
        source = self._source(job, body)
        export_id = uuid.uuid4().hex[:12]
        plan, frame = self._plan(job.id, export_id, body, source)
        with self._lock:
            pending = sum(1 for v in self._views.values() if v.state in _PENDING)
            if pending >= self.settings.export_max_pending:
                raise StudioError("export_busy", count=pending)
            view = ExportView(
                id=export_id,
                job_id=job.id,
                format=body.format,
                take=body.take,
                state=ExportState.queued,
                progress=0.0,
                filename=_download_name(job.id, body, frame),
                width=plan.width,
                height=plan.height,
                fps=None if body.format == "frame_png" else plan.fps,
                frame=frame,
                created_at=time.time(),
            )
            self._views[export_id] = view
        self._publish(view)
        self._executor.submit(self._make, view, plan)
        return view

    def _make(self, view: ExportView, plan: encode.ExportPlan) -> None:
        started = time.monotonic()
        view = self._set(view, state=ExportState.running)
        self._publish(view)
        last_sent = [started]

        def progress(fraction: float) -> None:
            now = time.monotonic()
            if now - last_sent[0] >= PROGRESS_EVERY_S:
                last_sent[0] = now
                self._publish(self._set(view, progress=round(fraction, 4)))

        try:
            result = encode.run(plan, progress)
        except Exception as exc:
            log.exception("export %s of job %s failed", view.id, view.job_id)
            error = (
                StudioError("export_source_missing", name=plan.source.name)
                if not plan.source.exists()
                else StudioError("export_failed", error=f"{type(exc).__name__}: {exc}")
            )
            view = self._set(
                view,
                state=ExportState.failed,
                error=error.message,
                error_message={"code": error.code, "params": error.params},
                elapsed_s=round(time.monotonic() - started, 3),
            )
        else:
            view = self._set(
                view,
                state=ExportState.done,
                progress=1.0,
                url=export_url(view.job_id, plan.target.name),
                width=result.width,
                height=result.height,
                fps=result.fps,
                frames=result.frames,
                bytes=result.bytes,
                elapsed_s=round(time.monotonic() - started, 3),
            )
        try:
            self._manifest(view.job_id, view.id).write_text(view.model_dump_json(), encoding="utf-8")
        except OSError:
            log.warning("could not keep export %s's record (the job's folder is gone?)", view.id)
        self._publish(view)

    def get(self, job_id: str, export_id: str) -> ExportView:
        with self._lock:
            view = self._views.get(export_id)
        if view is not None and view.job_id == job_id:
            return view
        if _EXPORT_ID.fullmatch(export_id):
            try:
                return ExportView.model_validate(json.loads(self._manifest(job_id, export_id).read_text("utf-8")))
            except (OSError, ValueError):
                pass
        raise StudioError("export_not_found", job_id=job_id, export_id=export_id)

    def list(self, job_id: str) -> list[ExportView]:
        """The job's exports: those of this run and those recorded on disk, newest first."""
        found = {}
        folder = exports_dir(self.settings, job_id)
        if folder.is_dir():
            for manifest in folder.glob("*.json"):
                try:
                    view = ExportView.model_validate(json.loads(manifest.read_text("utf-8")))
                except (OSError, ValueError):
                    continue
                found[view.id] = view
        with self._lock:
            found.update({k: v for k, v in self._views.items() if v.job_id == job_id})
        return sorted(found.values(), key=lambda v: v.created_at, reverse=True)
