"""The FastAPI application: services are built in the lifespan and kept on `app.state`.

`create_app` is a factory (uvicorn `--factory`), so tests and every entry point build the same app
from a `Settings` object; nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from backend import analysis_api, api, auth, monitor_api, openapi_doc, uploads
from backend.analyzers.service import AnalysisService
from backend.body_limits import install_body_limits
from backend.config import Settings
from backend.db import Store, StoreError
from backend.frontend_routes import build_router as build_frontend_router
from backend.job_queue import JobError, JobQueue
from backend.pipeline.engines import Engines
from backend.smart_params import Suggestions
from backend.ws_manager import WebSocketManager

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> str:
    """FastAPI's error list → one sentence the UI can show as it is."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "invalid request: " + "; ".join(parts)


def _suggester(analysis: AnalysisService):
    """Image analysis → smart-parameter defaults (the user's explicit values still win)."""

    async def suggest(paths):
        result = await analysis.analyze(paths)
        if not result.get("available"):
            return None
        s = result.get("suggestions") or {}
        pairs = s.get("pairs") or []
        return Suggestions(
            seconds=[p["seconds"] for p in pairs] or None,
            strength=[int(p["strength"]) for p in pairs] or None,
            resolution=s.get("resolution"),
            fit=s.get("fit"),
        )

    return suggest


def _check_data_dir(settings: Settings) -> None:
    """Opens (and migrates) the database once before serving; a folder or database the studio
    cannot use ends the start with a message that says what to do, not a traceback."""
    try:
        settings.ensure_dirs()
        Store(settings.database_path).close()
        return
    except StoreError as exc:
        message = str(exc)
    except OSError as exc:
        message = (f"the studio cannot create its data folder STUDIO_DATA_DIR={settings.data_dir} ({exc}): "
                   f"set STUDIO_DATA_DIR to a folder the studio's user can write / 데이터 폴더를 만들 수 "
                   f"없습니다: STUDIO_DATA_DIR을 쓰기 가능한 폴더로 지정하세요")
    # Both entry points (uvicorn --factory, python -m backend) call this factory first: exiting
    # here prints the message alone and ends the process non-zero.
    raise SystemExit(f"FramePack Video Studio cannot start: {message}")


def create_app(settings: Settings | None = None, analysis: AnalysisService | None = None) -> FastAPI:
    settings = settings or Settings()
    _check_data_dir(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.database_path)
        uploads.recover_incoming(settings, lambda upload_id: store.get_upload(upload_id) is not None)
        engines = Engines(settings)
        service = analysis or AnalysisService(settings)
        queue_ref: dict[str, JobQueue] = {}
        ws = WebSocketManager(snapshot=lambda: queue_ref["queue"].snapshot())
        ws.bind_loop(asyncio.get_running_loop())
        queue = JobQueue(settings, store, ws, engines, prompts=service, suggest=_suggester(service))
        queue_ref["queue"] = queue
        app.state.store, app.state.engines, app.state.ws = store, engines, ws
        app.state.queue, app.state.analysis = queue, service
        await queue.start()
        log.info("studio ready: data in %s", settings.data_dir)
        try:
            yield
        finally:
            await queue.stop()
            await ws.close_all()
            await service.aclose()
            store.close()

    app = FastAPI(title="FramePack Video Studio", lifespan=lifespan)
    app.state.settings = settings

    @app.exception_handler(JobError)
    async def _job_error(_: Request, exc: JobError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    openapi_doc.install(app)
    app.include_router(api.router)
    app.include_router(analysis_api.router)
    app.include_router(monitor_api.router)
    app.include_router(auth.router)
    app.include_router(build_frontend_router())
    app.mount("/files/uploads", StaticFiles(directory=settings.uploads_dir), name="uploads")
    app.mount("/files/outputs", StaticFiles(directory=settings.outputs_dir), name="outputs")
    install_body_limits(app, settings)  # before auth, so it runs after the token check
    auth.install_auth(app, settings)
    return app
