"""POST /api/analyze: suggestions for the sliders before a job is submitted.

The route only maps upload ids to files and calls the app's `AnalysisService`
(`app.state.analysis`, set in the app's lifespan), which runs all model work on its own thread; this module never
imports torch. It never waits for the model to load: while it loads the answer is `state: "loading"`
(with the suggestions the image sizes allow) and the page asks again.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from backend.models import ErrorBody
from backend.utils.files import upload_path

if TYPE_CHECKING:
    from backend.analyzers.service import AnalysisService

router = APIRouter()

# Upload ids are server-made tokens; anything else could walk out of the uploads folder.
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class AnalyzeRequest(BaseModel):
    images: list[str] = Field(..., description="upload ids, in the order of the video")


def _service(request: Request) -> "AnalysisService":
    service = getattr(request.app.state, "analysis", None)
    if service is None:
        raise HTTPException(
            503,
            "Image analysis is not running on this server. / 이 서버에서 이미지 분석을 사용할 수 없습니다.",
        )
    return service


@router.post("/api/analyze", responses={code: {"model": ErrorBody} for code in (400, 404, 503)})
async def analyze(body: AnalyzeRequest, request: Request) -> dict[str, Any]:
    settings = request.app.state.settings
    if not body.images:
        raise HTTPException(400, "Send at least one image to analyse. / 분석할 이미지를 하나 이상 보내세요.")
    if len(body.images) > settings.max_images_per_job:
        raise HTTPException(
            400,
            f"Too many images: {len(body.images)} (at most {settings.max_images_per_job}). / "
            f"이미지가 너무 많습니다: {len(body.images)}개 (최대 {settings.max_images_per_job}개).",
        )
    paths = []
    for upload_id in body.images:
        if not _UPLOAD_ID.match(upload_id):
            raise HTTPException(400, f"Not an upload id: {upload_id[:80]!r}. / 업로드 ID가 아닙니다.")
        path = upload_path(settings, upload_id)
        if not path.is_file():
            raise HTTPException(
                404,
                f"Upload {upload_id} was not found; upload the image again. / "
                f"업로드 {upload_id}을(를) 찾을 수 없습니다. 이미지를 다시 올려 주세요.",
            )
        paths.append(path)
    return await _service(request).analyze(paths)
