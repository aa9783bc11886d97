"""The studio's REST routes and the job WebSocket. No torch here: work goes through the services."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, WebSocket
from fastapi.responses import JSONResponse

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.contracts.models import (
    FINISHED,
    MAX_PROMPT_CHARS,
    MAX_TAKE_NUMBER,
    MAX_TRANSITION_INDEX,
    MIN_IMAGES_PER_JOB,
    UNFINISHED,
    CancelledJobs,
    EngineState,
    ErrorBody,
    Health,
    HealthDefaults,
    JobCreate,
    JobCreated,
    JobDefaults,
    JobEdit,
    JobList,
    JobMove,
    JobStatus,
    JobView,
    Limits,
    LoraList,
    LoraView,
    Meta,
    ParamsPreview,
    ParamsView,
    PostprocessOptions,
    QueueOrder,
    SettingDefaults,
    StatusSets,
    TakeChoice,
    TakeCreate,
    UploadList,
    UploadView,
)
from backend.jobs import params as smart_params
from backend.jobs.queue import JobQueue
from backend.jobs.transition_options import check_end_influence, plan_keyframes, plan_prompts
from backend.utils.files import upload_path, upload_url
from backend.utils.redact import hide_paths_in
from backend.utils.storage import StorageFull, check_space, is_disk_full
from backend.web.uploads import UploadReceiver

router = APIRouter()

# The numbers in a take's URL, bounded so that no value reaches the store as an integer it cannot
# hold: out of range is 422 (`invalid_request`), like any other invalid value.
TransitionIndex = Annotated[int, Path(ge=0, le=MAX_TRANSITION_INDEX, description="0-based transition")]
TakeNumber = Annotated[int, Path(ge=1, le=MAX_TAKE_NUMBER, description="1-based take of the transition")]


def _doc(*statuses: int, **answers) -> dict:
    """`responses=` for a route: its error statuses, all answered as `ErrorBody`, plus answers other
    than the route's `response_model` (a 503 health)."""
    out: dict = {code: {"model": ErrorBody} for code in statuses}
    for code, model in answers.items():
        out[int(code.lstrip("_"))] = {"model": model}
    return out


# The multipart body is parsed by hand (streamed, limited): this tells /openapi.json what it is.
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            }
        },
    }
}
# Multipart framing around each file is small; this bounds a request before any byte is parsed.
MULTIPART_OVERHEAD = 64 * 1024


def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


def _upload_view(row: dict) -> UploadView:
    return UploadView(
        id=row["id"], width=row["width"], height=row["height"], url=upload_url(row["id"]), filename=row["filename"]
    )


async def _check_space(request: Request, incoming_bytes: int) -> None:
    """Raises `StorageFull` (507) while the disk or the quota has no room for new work."""
    await asyncio.to_thread(check_space, request.app.state.settings, incoming_bytes)


@router.post(
    "/api/uploads",
    status_code=201,
    openapi_extra=UPLOAD_BODY,
    response_model=UploadList,
    responses=_doc(400, 413, 415, 422, 500, 507),
)
async def upload_images(request: Request):
    settings = request.app.state.settings
    limit = settings.max_files_per_upload * (settings.max_upload_bytes + MULTIPART_OVERHEAD)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise StudioError(
            "upload_too_large", files=settings.max_files_per_upload, mb=messages.num(settings.max_upload_mb)
        )
    incoming = int(length) if length and length.isdigit() else settings.max_upload_bytes
    await _check_space(request, incoming)
    receiver = UploadReceiver(settings)
    stored = await receiver.receive(request.headers.get("content-type", ""), request.stream())
    store = request.app.state.store
    try:
        for item in stored:
            store.add_upload(item.id, item.filename, item.width, item.height, item.bytes)
            receiver.move_into_place(item)
    except Exception as exc:
        receiver.discard()
        try:  # all or nothing: rows already written go with their files
            for item in stored:
                store.delete_upload(item.id)
        except Exception:
            pass  # rows without files answer 404 like any missing image
        if is_disk_full(exc):
            raise StorageFull() from exc
        raise
    return UploadList(uploads=[_upload_view(store.get_upload(item.id)) for item in stored])


def _no_upload(upload_id: str) -> StudioError:
    return StudioError("upload_not_found", upload_id=upload_id)


@router.get("/api/uploads/{upload_id}", response_model=UploadView, responses=_doc(404))
async def get_upload(upload_id: str, request: Request):
    row = request.app.state.store.get_upload(upload_id)
    if row is None:
        raise _no_upload(upload_id)
    return _upload_view(row)


@router.delete("/api/uploads/{upload_id}", status_code=204, responses=_doc(404, 409))
async def delete_upload(upload_id: str, request: Request):
    """Removes an uploaded image and its file. An image a job still uses stays until that job is
    deleted (409): a queued or interrupted job needs it to run, a finished one to be retried."""
    store = request.app.state.store
    if store.get_upload(upload_id) is None:
        raise _no_upload(upload_id)
    users = store.jobs_using_upload(upload_id)
    if users:
        shown = ", ".join(users[:5]) + (f" (+{len(users) - 5})" if len(users) > 5 else "")
        raise StudioError("upload_in_use", upload_id=upload_id, jobs=shown)
    # No await between the check and the delete: a job cannot take the image in between.
    store.delete_upload(upload_id)
    upload_path(request.app.state.settings, upload_id).unlink(missing_ok=True)
    return Response(status_code=204)


def _check_image_count(images: list[str] | None, request: Request) -> None:
    # Checked before anything looks an id up: a long list must cost nothing.
    limit = request.app.state.settings.max_images_per_job
    if images is not None and len(images) > limit:
        raise StudioError("too_many_images", limit=limit, count=len(images))


@router.get("/api/loras", response_model=LoraList)
async def list_loras(request: Request):
    """The LoRA files of STUDIO_LORA_DIR: name, size, rank, the engine each fits (read from its key
    names and checked against the installed model's width), or why it fits none."""
    import asyncio

    from backend.contracts import messages
    from backend.jobs.transition_options import engine_widths
    from backend.utils.lora_files import listing

    settings = request.app.state.settings

    def read() -> list[LoraView]:
        views = []
        for f in listing(settings.loras_dir, engine_widths(settings)):
            views.append(
                LoraView(
                    name=f.name,
                    size_bytes=f.size_bytes,
                    rank=f.rank,
                    format=f.format,
                    engine=f.engine if not f.problem else None,
                    reason=messages.bilingual(f.problem, f.params) if f.problem else None,
                    reason_code=f.problem,
                    reason_params=f.params or None,
                )
            )
        return views

    items = await asyncio.get_running_loop().run_in_executor(None, read)
    return LoraList(folder=hide_paths_in(str(settings.loras_dir), settings), items=items)


@router.post("/api/params", response_model=ParamsView, responses=_doc(400, 404, 422))
async def preview_params(body: ParamsPreview, request: Request):
    _check_image_count(body.images, request)
    queue = _queue(request)
    engine = body.engine or request.app.state.settings.default_engine
    images = body.images or []
    if len(images) >= 2:
        suggestions = await queue.suggestions_for(images)
        params = queue.resolve_params(images, body.settings, engine, suggestions)
    else:
        queue.check_sliders(body.settings)
        check_end_influence(engine, body.settings.end_influence)
        settings = request.app.state.settings
        params = smart_params.resolve(
            body.settings, 1, None, fit=settings.fit_mode, engine=engine, wan_model=settings.wan_model
        )
    # Each timed prompt's sections, as a job would plan them (a pair's own prompt, else the global one).
    own = list(body.prompts or [])[: len(params["segments"])]
    own += [None] * (len(params["segments"]) - len(own))
    plan_prompts(engine, params, [p if p and p.strip() else body.prompt for p in own])
    plan_keyframes(engine, params, body.keyframes, queue.upload_exists)  # each shows where it lands
    if body.settings.seed is None:
        # A job draws its random seed when submitted; a preview would show one it will not use.
        params["seed"] = None
        for segment in params["segments"]:
            segment["seed"] = None
    return ParamsView(params=params, segments=len(params["segments"]), sliders=smart_params.slider_mapping(engine))


# Errors (JobError, StorageFull) are answered by the handler in backend.web.error_responses.
@router.post("/api/jobs", status_code=201, response_model=JobCreated, responses=_doc(400, 404, 409, 507))
async def create_job(body: JobCreate, request: Request):
    _check_image_count(body.images, request)
    await _check_space(request, 0)
    try:
        return await _queue(request).submit(body)
    except Exception as exc:
        if is_disk_full(exc):
            raise StorageFull() from exc
        raise


@router.post("/api/jobs/cancel-queued", response_model=CancelledJobs, responses=_doc(503))
async def cancel_queued(request: Request):
    """Cancels every job that waits (queued or interrupted); running jobs go on."""
    return CancelledJobs(cancelled=await _queue(request).cancel_queued())


@router.get("/api/jobs", response_model=JobList)
async def list_jobs(request: Request):
    return JobList(jobs=_queue(request).all_jobs())


@router.get("/api/jobs/{job_id}", response_model=JobView, responses=_doc(404))
async def get_job(job_id: str, request: Request):
    return _queue(request).get(job_id)


@router.post("/api/jobs/{job_id}/cancel", response_model=JobView, responses=_doc(404, 409))
async def cancel_job(job_id: str, request: Request):
    return await _queue(request).cancel(job_id)


@router.post("/api/jobs/{job_id}/move", response_model=QueueOrder, responses=_doc(404, 409))
async def move_job(job_id: str, body: JobMove, request: Request):
    """Moves a waiting job one place up or down, or before another waiting job; answers the
    waiting jobs in their new order."""
    return QueueOrder(jobs=await _queue(request).move(job_id, body))


@router.patch("/api/jobs/{job_id}", response_model=JobView, responses=_doc(404, 409, 422, 507))
async def edit_job(job_id: str, body: JobEdit, request: Request):
    """Changes a queued job's sliders, prompts, engine or post-processing before it starts."""
    return await _queue(request).edit(job_id, body)


@router.post("/api/jobs/{job_id}/retry", response_model=JobView, responses=_doc(404, 409))
async def retry_job(job_id: str, request: Request):
    return await _queue(request).retry(job_id)


@router.delete("/api/jobs/{job_id}", status_code=204, responses=_doc(404))
async def delete_job(job_id: str, request: Request):
    await _queue(request).delete(job_id)
    return Response(status_code=204)


@router.get("/api/health", response_model=Health, responses=_doc(_503=Health))
async def health(request: Request):
    engines = request.app.state.engines
    device = await asyncio.to_thread(engines.device)
    settings = request.app.state.settings
    worker = _queue(request).worker_status()
    body = Health(
        status="ok" if worker.ok else "degraded",
        worker=worker,
        device=device,
        engines={
            name: EngineState(**state, licence=engines.spec(name).licence) for name, state in engines.describe().items()
        },
        postprocess=engines.describe_postprocess(),
        # The engine a job without one gets: the configured one while it is installed.
        defaults=HealthDefaults(
            engine=engines.default_engine(),
            configured_engine=settings.default_engine,
            max_seconds_per_transition=settings.max_seconds_per_transition,
            max_images_per_job=settings.max_images_per_job,
            # The bucket the page starts at: the memory plan's default for this GPU.
            resolution=device["default_resolution"],
        ),
    )
    # Open to anyone who can reach the port: folders are named by their settings, not shown.
    shown = hide_paths_in(body.model_dump(mode="json"), settings)
    # 503 while jobs cannot make progress, so health checks (Docker, the notebook) notice.
    return shown if worker.ok else JSONResponse(shown, status_code=503)


@router.get("/api/meta", response_model=Meta)
async def meta(request: Request) -> Meta:
    """What the page would otherwise copy: the job statuses and which are finished, the defaults a
    job gets for what it leaves unset, and this server's limits. Fixed while the server runs; it
    does not depend on the worker's health, so the page has it even while /api/health is 503."""
    settings = request.app.state.settings
    return Meta(
        statuses=StatusSets(all=list(JobStatus), finished=list(FINISHED), unfinished=list(UNFINISHED)),
        defaults=JobDefaults(
            engine=settings.default_engine,
            settings=SettingDefaults(**smart_params.DEFAULTS),
            postprocess=PostprocessOptions(),
        ),
        limits=Limits(
            min_images_per_job=MIN_IMAGES_PER_JOB,
            max_images_per_job=settings.max_images_per_job,
            max_seconds_per_transition=settings.max_seconds_per_transition,
            max_takes_per_transition=settings.max_takes_per_transition,
            max_takes_kept=settings.max_takes_kept,
            max_prompt_chars=MAX_PROMPT_CHARS,
            max_files_per_upload=settings.max_files_per_upload,
            max_upload_mb=settings.max_upload_mb,
        ),
        engines=request.app.state.engines.specs(),
    )


@router.post(
    "/api/jobs/{job_id}/transitions/{index}/takes",
    response_model=JobView,
    status_code=202,
    responses=_doc(404, 409, 422),
)
async def new_take(job_id: str, index: TransitionIndex, body: TakeCreate, request: Request):
    """Queues one more take of one transition on the job's lane; nothing else is generated again."""
    return await _queue(request).new_take(job_id, index, body)


@router.post("/api/jobs/{job_id}/transitions/{index}/choose", response_model=JobView, responses=_doc(404, 409))
async def choose_take(job_id: str, index: TransitionIndex, body: TakeChoice, request: Request):
    return await _queue(request).choose_take(job_id, index, body.take)


@router.delete("/api/jobs/{job_id}/transitions/{index}/takes/{take}", response_model=JobView, responses=_doc(404, 409))
async def delete_take(job_id: str, index: TransitionIndex, take: TakeNumber, request: Request):
    return await _queue(request).delete_take(job_id, index, take)


@router.post("/api/jobs/{job_id}/rebuild", response_model=JobView, status_code=202, responses=_doc(404, 409))
async def rebuild_job(job_id: str, request: Request):
    """Joins the chosen takes again and post-processes the result; no take is generated."""
    return await _queue(request).rebuild(job_id)


@router.websocket("/ws")
async def job_events(ws: WebSocket):
    await ws.app.state.ws.serve(ws)
