"""The composer's settings kept and given back: named presets (GET/POST/PATCH/DELETE
/api/presets) and the settings a video the studio made carries (POST /api/settings-from-video).

A video is read in memory only (its start is enough: the studio writes its tags there), never
written to disk; its size is bounded by the body limits (STUDIO_VIDEO_PROBE_MB)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from python_multipart.multipart import MultipartParser, parse_options_header

from backend.contracts.errors import StudioError
from backend.contracts.models import ErrorBody, PresetCreate, PresetList, PresetRename, PresetView, VideoSettings
from backend.jobs.composer import Presets, settings_from_tags
from backend.utils.video_io import read_tags

router = APIRouter()

VIDEO_PATH = "/api/settings-from-video"
VIDEO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def _doc(*statuses: int) -> dict:
    return {code: {"model": ErrorBody} for code in statuses}


def _presets(request: Request) -> Presets:
    state = request.app.state
    presets = getattr(state, "presets", None)
    if presets is None:  # made on first use; no await in between, so only one is made
        presets = state.presets = Presets(state.store)
    return presets


@router.get("/api/presets", response_model=PresetList)
async def list_presets(request: Request):
    return _presets(request).list()


@router.post("/api/presets", status_code=201, response_model=PresetView, responses=_doc(409, 422))
async def create_preset(body: PresetCreate, request: Request):
    return _presets(request).create(body)


@router.patch("/api/presets/{preset_id}", response_model=PresetView, responses=_doc(404, 409, 422))
async def rename_preset(preset_id: str, body: PresetRename, request: Request):
    return _presets(request).rename(preset_id, body.name)


@router.delete("/api/presets/{preset_id}", status_code=204, responses=_doc(404, 409))
async def delete_preset(preset_id: str, request: Request):
    _presets(request).delete(preset_id)
    return Response(status_code=204)


def _file_part(content_type: str, body: bytes) -> tuple[str, bytes]:
    """The `file` field of a multipart body held in memory: its filename and bytes."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise StudioError("video_probe_no_file")
    parts: list[dict] = []
    header: dict = {"field": b"", "value": b""}

    def on_part_begin():
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data, start, end):
        header["field"] += data[start:end]

    def on_header_value(data, start, end):
        header["value"] += data[start:end]

    def on_header_end():
        parts[-1]["headers"][header["field"].lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    def on_part_data(data, start, end):
        parts[-1]["data"] += data[start:end]

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception:
        raise StudioError("video_probe_no_file") from None
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if disposition.get(b"name") == b"file":
            filename = disposition.get(b"filename", b"video").decode("utf-8", "replace")[:200] or "video"
            return filename, bytes(part["data"])
    raise StudioError("video_probe_no_file")


@router.post(VIDEO_PATH, response_model=VideoSettings, openapi_extra=VIDEO_BODY, responses=_doc(413, 422))
async def settings_from_video(request: Request):
    """The composer's settings from a video the studio made (its `studio_settings` tag, or for an
    older video its resolved parameters and comment). 422 for a file that is no video or carries
    none. The body's size is bounded before it is read (STUDIO_VIDEO_PROBE_MB)."""
    body = await request.body()
    filename, data = _file_part(request.headers.get("content-type", ""), body)
    try:
        tags = await asyncio.to_thread(read_tags, data)
    except ValueError as exc:
        raise StudioError("video_not_readable", filename=filename, reason=str(exc)[:200]) from None
    return settings_from_tags(tags, filename)
