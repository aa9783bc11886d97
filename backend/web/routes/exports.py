"""Exports of a finished job or one take (WebM, GIF, PNG frames, one PNG, ping-pong loop).

The request is checked and the file probed on a thread; the export itself runs on the export
service's own threads, its progress on `/ws` (`job.export`)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from backend.contracts.models import ErrorBody, ExportCreate, ExportView
from backend.jobs.export_service import ExportService

router = APIRouter()


def _doc(*statuses: int) -> dict:
    return {code: {"model": ErrorBody} for code in statuses}


def _service(request: Request) -> ExportService:
    state = request.app.state
    service = getattr(state, "exports", None)
    if service is None:  # made on first use; no await in between, so only one is made
        service = state.exports = ExportService(state.settings, state.ws)
    return service


@router.post(
    "/api/jobs/{job_id}/exports", status_code=202, response_model=ExportView, responses=_doc(404, 409, 422, 503)
)
async def create_export(job_id: str, body: ExportCreate, request: Request):
    """Queues an export of the job's video (or of `take`); answers at once with its id."""
    job = request.app.state.queue.get(job_id)
    service = _service(request)
    return await asyncio.to_thread(service.create, job, body)


@router.get("/api/jobs/{job_id}/exports", response_model=list[ExportView], responses=_doc(404))
async def list_exports(job_id: str, request: Request):
    request.app.state.queue.get(job_id)
    return await asyncio.to_thread(_service(request).list, job_id)


@router.get("/api/jobs/{job_id}/exports/{export_id}", response_model=ExportView, responses=_doc(404))
async def get_export(job_id: str, export_id: str, request: Request):
    request.app.state.queue.get(job_id)
    return await asyncio.to_thread(_service(request).get, job_id, export_id)
