"""POST /api/analyze: suggestions for the sliders before a job is submitted.

The route only maps upload ids to files and calls the app's `AnalysisService`
(`app.state.analysis`, set in the app's lifespan), which runs all model work on its own thread; this module never
imports torch. It never waits for the model to load: while it loads the answer is `state: "loading"`
(with the suggestions the image sizes allow) and the page asks again.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from backend.contracts.errors import StudioError
from backend.contracts.models import ErrorBody
from backend.utils.files import upload_path
from backend.web.openapi_doc import UPLOAD_ID_PATTERN

if TYPE_CHECKING:
    from backend.jobs.analyzers.service import AnalysisService

router = APIRouter()

# Upload ids are server-made tokens; anything else could walk out of the uploads folder.
_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)


class AnalyzeRequest(BaseModel):
    images: list[str] = Field(..., description="upload ids, in the order of the video")


def _service(request: Request) -> AnalysisService:
    service = getattr(request.app.state, "analysis", None)
    if service is None:
        raise StudioError("analysis_not_running")
    return service


@router.post("/api/analyze", responses={code: {"model": ErrorBody} for code in (400, 404, 503)})
async def analyze(body: AnalyzeRequest, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    if not body.images:
        raise StudioError("analyze_no_images")
    if len(body.images) > settings.max_images_per_job:
        raise StudioError("analyze_too_many_images", count=len(body.images), limit=settings.max_images_per_job)
    paths = []
    for upload_id in body.images:
        if not _UPLOAD_ID.match(upload_id):
            raise StudioError("analyze_bad_id", id=repr(upload_id[:80]))
        path = upload_path(settings, upload_id)
        if not path.is_file():
            raise StudioError("analyze_upload_missing", upload_id=upload_id)
        paths.append(path)
    return await _service(request).analyze(paths)
