"""The studio's REST routes and the job WebSocket. No torch here: work goes through the services."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response, WebSocket
from fastapi.responses import JSONResponse

from backend import smart_params
from backend.job_queue import JobQueue
from backend.schemas import JobCreate, ParamsPreview
from backend.uploads import UploadError, UploadReceiver

router = APIRouter()
# Multipart framing around each file is small; this bounds a request before any byte is parsed.
MULTIPART_OVERHEAD = 64 * 1024


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


def _upload_view(row: dict) -> dict:
    return {"id": row["id"], "width": row["width"], "height": row["height"],
            "url": f"/files/uploads/{row['id']}.png", "filename": row["filename"]}


@router.post("/api/uploads", status_code=201)
async def upload_images(request: Request):
    settings = request.app.state.settings
    limit = settings.max_files_per_upload * (settings.max_upload_bytes + MULTIPART_OVERHEAD)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return _error(413, f"upload too large: at most {settings.max_files_per_upload} files of "
                           f"{settings.max_upload_mb:g} MB each / 업로드가 너무 큽니다")
    receiver = UploadReceiver(settings)
    try:
        stored = await receiver.receive(request.headers.get("content-type", ""), request.stream())
    except UploadError as exc:
        return _error(exc.status, exc.message)
    store = request.app.state.store
    try:
        for item in stored:
            store.add_upload(item.id, item.filename, item.width, item.height, item.bytes)
    except Exception:
        receiver.discard()
        raise
    return {"uploads": [_upload_view(store.get_upload(item.id)) for item in stored]}


@router.get("/api/uploads/{upload_id}")
async def get_upload(upload_id: str, request: Request):
    row = request.app.state.store.get_upload(upload_id)
    if row is None:
        return _error(404, f"image {upload_id} not found / 이미지 {upload_id}을(를) 찾을 수 없습니다")
    return _upload_view(row)


@router.post("/api/params")
async def preview_params(body: ParamsPreview, request: Request):
    queue = _queue(request)
    engine = body.engine or request.app.state.settings.default_engine
    images = body.images or []
    if len(images) >= 2:
        suggestions = await queue.suggestions_for(images)
        params = queue.resolve_params(images, body.settings, engine, suggestions)
    else:
        params = smart_params.resolve(body.settings, 1, None, fit=request.app.state.settings.fit_mode,
                                      engine=engine)
    if body.settings.seed is None:
        # A job draws its random seed when submitted; a preview would show one it will not use.
        params["seed"] = None
        for segment in params["segments"]:
            segment["seed"] = None
    return {"params": params, "segments": len(params["segments"])}


# JobError is turned into {"detail": message} with its status by the app's exception handler.
@router.post("/api/jobs", status_code=201)
async def create_job(body: JobCreate, request: Request):
    return await _queue(request).submit(body)


@router.get("/api/jobs")
async def list_jobs(request: Request):
    return {"jobs": _queue(request).list()}


@router.get("/api/jobs/{job_id}")
async def get_job(job_id: str, request: Request):
    return _queue(request).get(job_id)


@router.post("/api/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request):
    return await _queue(request).cancel(job_id)


@router.post("/api/jobs/{job_id}/retry")
async def retry_job(job_id: str, request: Request):
    return await _queue(request).retry(job_id)


@router.delete("/api/jobs/{job_id}", status_code=204)
async def delete_job(job_id: str, request: Request):
    await _queue(request).delete(job_id)
    return Response(status_code=204)


@router.get("/api/health")
async def health(request: Request):
    engines = request.app.state.engines
    device = await asyncio.to_thread(engines.device)
    settings = request.app.state.settings
    worker = _queue(request).worker_status()
    body = {"status": "ok" if worker["ok"] else "degraded", "worker": worker,
            "device": device, "engines": engines.describe(),
            "postprocess": engines.describe_postprocess(),
            # The engine a job without one gets: the configured one while it is installed.
            "defaults": {"engine": engines.default_engine(), "configured_engine": settings.default_engine,
                         "max_seconds_per_transition": settings.max_seconds_per_transition,
                         "max_images_per_job": settings.max_images_per_job}}
    # 503 while jobs cannot make progress, so health checks (Docker, the notebook) notice.
    return body if worker["ok"] else JSONResponse(body, status_code=503)


@router.websocket("/ws")
async def job_events(ws: WebSocket):
    await ws.app.state.ws.serve(ws)
