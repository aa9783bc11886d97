"""The one place that turns an error code into an HTTP answer.

`STATUS` gives each catalogue code that can answer a request its status; `body` is the answer
every error gets: `detail` (both languages in one text, what older clients and the tests read),
`code` and `params` (the page renders its own language from them), and the error's data fields.
Routes let `StudioError` propagate (`install` adds the handler); middleware that answers before
routing (access checks, body limits) sends `body` itself with `status_for`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as FrameworkHTTPException

from backend.contracts import messages
from backend.contracts.errors import StudioError

STATUS: dict[str, int] = {
    "invalid_request": 422,
    "body_unreadable": 400,
    "not_found": 404,
    "method_not_allowed": 405,
    "too_many_images": 422,
    "upload_too_large": 413,
    "upload_not_found": 404,
    "upload_in_use": 409,
    "upload_too_many_fields": 413,
    "upload_too_many_files": 413,
    "upload_field_too_large": 413,
    "upload_file_too_large": 413,
    "image_pixel_bomb": 413,
    "image_corrupt_format": 422,
    "image_not_an_image": 415,
    "image_format_unsupported": 415,
    "image_too_large": 413,
    "image_too_small": 422,
    "image_empty": 422,
    "image_corrupt": 422,
    "upload_not_multipart": 415,
    "upload_no_image": 422,
    "upload_store_failed": 500,
    "upload_malformed": 400,
    "upload_unterminated": 400,
    "disk_full": 507,
    "disk_low": 507,
    "quota_used": 507,
    "body_too_large": 413,
    "body_too_slow": 408,
    "uploads_per_client": 429,
    "uploads_busy": 503,
    "header_too_slow": 408,
    "connections_per_address": 429,
    "token_missing": 401,
    "token_wrong": 401,
    "login_limited": 429,
    "file_not_found": 404,
    "cross_site": 403,
    "bad_host": 400,
    "loopback_only": 403,
    "job_not_found": 404,
    "job_image_missing": 404,
    "job_too_many_images": 422,
    "job_too_many_seconds": 422,
    "unknown_engine": 422,
    "engine_no_end_influence": 422,
    "engine_no_loras": 422,
    "lora_missing": 422,
    "lora_unreadable": 422,
    "lora_no_engine": 422,
    "lora_wrong_width": 422,
    "lora_wrong_engine": 422,
    "engine_no_timed_prompts": 422,
    "timed_prompt_malformed": 422,
    "timed_prompt_too_late": 422,
    "timed_prompt_same_section": 422,
    "engine_no_keyframes": 422,
    "keyframe_no_transition": 422,
    "keyframe_image_missing": 422,
    "keyframe_too_many": 422,
    "keyframe_transition_too_short": 422,
    "keyframe_outside": 422,
    "keyframe_same_point": 422,
    "engine_not_ready": 409,
    "job_already_finished": 409,
    "job_broken_no_retry": 409,
    "job_not_retryable": 409,
    "job_too_many_takes": 422,
    "transition_not_found": 404,
    "take_not_found": 404,
    "take_not_finished": 409,
    "take_is_chosen": 409,
    "take_is_last": 409,
    "take_limit_reached": 409,
    "job_busy": 409,
    "job_not_rebuildable": 409,
    "job_broken_no_takes": 409,
    "job_not_queued": 409,
    "queue_changed": 409,
    "preset_not_found": 404,
    "preset_builtin": 409,
    "preset_name_empty": 422,
    "preset_name_too_long": 422,
    "preset_name_taken": 409,
    "video_not_readable": 422,
    "video_no_studio_settings": 422,
    "video_probe_too_large": 413,
    "video_probe_no_file": 422,
    "export_job_not_finished": 409,
    "export_take_not_finished": 409,
    "export_unknown_format": 422,
    "export_bad_width": 422,
    "export_bad_fps": 422,
    "export_bad_frame": 422,
    "export_not_found": 404,
    "export_busy": 503,
    "export_source_missing": 404,
    "analysis_not_running": 503,
    "analyze_no_images": 400,
    "analyze_too_many_images": 400,
    "analyze_bad_id": 400,
    "analyze_upload_missing": 404,
    # The data folder's database: answered when a request meets it (the start ends with it instead).
    "store_newer_schema": 503,
    "store_damaged": 503,
    "store_unwritable": 503,
}


# Refusals of the framework with a status no code above names: answered with that status.
STATUS_FROM_FRAMEWORK = frozenset({"http_error"})
_FRAMEWORK_CODES = {400: "body_unreadable", 404: "not_found", 405: "method_not_allowed"}


def status_for(code: str) -> int:
    return STATUS[code]


def body(code: str, params: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"detail": messages.bilingual(code, params), "code": code, "params": params or {}, **(extra or {})}


def error_body(exc: StudioError) -> dict[str, Any]:
    return body(exc.code, exc.params, exc.extra)


def response(exc: StudioError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=status_for(exc.code), headers=headers)


def encode(exc: StudioError) -> bytes:
    """The answer's bytes, for middleware that writes to ASGI `send` itself."""
    return json.dumps(error_body(exc), ensure_ascii=False).encode()


def validation_errors(exc: RequestValidationError) -> str:
    """FastAPI's error list → one sentence the UI can show as it is."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def _studio_error(_: Request, exc: StudioError):
        return response(exc)

    @app.exception_handler(FrameworkHTTPException)
    async def _framework(_: Request, exc: FrameworkHTTPException):
        code = _FRAMEWORK_CODES.get(exc.status_code, "http_error")
        if code == "body_unreadable" and exc.detail != messages.CATALOGUE[code]["en"]:
            code = "http_error"  # a 400 of another kind: its own words
        error = StudioError(code) if code == "body_unreadable" else StudioError(code, text=str(exc.detail))
        return JSONResponse(error_body(error), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return response(StudioError("invalid_request", errors=validation_errors(exc)))
