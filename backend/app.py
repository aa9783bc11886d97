"""The FastAPI application: services are built in the lifespan and kept on `app.state`.

`create_app` is a factory (uvicorn `--factory`), so tests and every entry point build the same app
from a `Settings` object; nothing is created at import time. `backend.app:app` (the command
`uvicorn backend.app:app`) is a small ASGI object that builds the app on its first call.

Started by hand on a host other machines can reach (`uvicorn ... --host 0.0.0.0`), the studio
makes the same token decision as `python -m backend`: a token is generated and printed, unless
STUDIO_TOKEN is set or the user opted out with STUDIO_ALLOW_OPEN_LAN. Whatever the start, a
studio without a token answers only connections that arrived on a loopback address.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.jobs.analyzers.service import AnalysisService
from backend.jobs.cluster.pool import RayPool
from backend.jobs.fanout import WebSocketManager
from backend.jobs.params import Suggestions
from backend.jobs.queue import JobQueue
from backend.jobs.store import Store, StoreError
from backend.pipeline.engines import Engines
from backend.utils.config import Settings
from backend.utils.files import OUTPUTS_URL, UPLOADS_URL
from backend.web import error_responses as web_errors
from backend.web import openapi_doc, uploads
from backend.web.auth_middleware import install_auth
from backend.web.body_limits import install_body_limits
from backend.web.routes import analysis as analysis_routes
from backend.web.routes import catalogue as message_routes
from backend.web.routes import exports as export_routes
from backend.web.routes import jobs as job_routes
from backend.web.routes import login as login_routes
from backend.web.routes import monitor as monitor_routes
from backend.web.routes import presets as preset_routes
from backend.web.routes.frontend import build_router as build_frontend_router

log = logging.getLogger(__name__)


def _suggester(analysis: AnalysisService):
    """Image analysis → smart-parameter defaults (the user's explicit values still win).
    Answers at once: only an analysis already computed counts (none is waited for)."""

    async def suggest(paths):
        result = await analysis.analyze(paths, load_wait_s=0.0, compute_wait_s=0.0)
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
        message = messages.bilingual("data_dir_unusable", {"folder": str(settings.data_dir), "error": str(exc)})
    # Both entry points (uvicorn --factory, python -m backend) call this factory first: exiting
    # here prints the message alone and ends the process non-zero.
    raise SystemExit(f"FramePack Video Studio cannot start: {message}")


def _cli_host() -> str | None:
    """The address uvicorn's command line binds (`--host`, or UVICORN_HOST), when started by it."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--host" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--host="):
            return arg.split("=", 1)[1]
    if "--fd" in argv or any(a.startswith("--fd=") for a in argv):
        return "0.0.0.0"  # a socket handed over by a supervisor: assume it is reachable
    return os.environ.get("UVICORN_HOST") or None


def settings_for_cli() -> Settings:
    """Settings for an app uvicorn builds from the command line: the host uvicorn binds, and the
    access token `python -m backend` would decide for it (printed, as there)."""
    from backend.web.access_token import banner, decide_token

    settings = Settings()
    host = _cli_host()
    if host and host != settings.host:
        settings = settings.model_copy(update={"host": host})
    decision = decide_token(settings)
    if decision.token != settings.token:
        settings = settings.model_copy(update={"token": decision.token})
    if decision.source != "loopback":
        print(banner(settings, decision), file=sys.stderr, flush=True)
    return settings


def _reached_from_outside(local_address: str | None) -> bool:
    """True when a connection arrived on a non-loopback IP of this machine. The ASGI server puts
    the socket's own address here; a name (in-process test clients) is no socket at all."""
    import ipaddress

    try:
        ip = ipaddress.ip_address((local_address or "").strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return not (mapped or ip).is_loopback


class _LoopbackOnlyWithoutToken:
    """Without a token (and without the STUDIO_ALLOW_OPEN_LAN opt-out), refuses every connection
    that did not arrive on a loopback address: a studio started on 0.0.0.0 in a way that skipped
    the token decision must not be open to the network."""

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.open = bool(settings.token.strip()) or (settings.allow_open_lan and not settings.behind_tunnel)

    async def __call__(self, scope, receive, send):
        if self.open or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        server = scope.get("server") or (None, None)
        if not _reached_from_outside(server[0]):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": "no access token"})
            return
        await web_errors.response(StudioError("loopback_only"))(scope, receive, send)


def create_app(settings: Settings | None = None, analysis: AnalysisService | None = None) -> FastAPI:
    settings = settings or settings_for_cli()
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
        workers = RayPool(settings) if settings.cluster == "ray" else None
        queue = JobQueue(settings, store, ws, engines, prompts=service, suggest=_suggester(service), workers=workers)
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

    web_errors.install(app)
    openapi_doc.install(app, settings)
    app.include_router(job_routes.router)
    app.include_router(export_routes.router)
    app.include_router(preset_routes.router)
    app.include_router(analysis_routes.router)
    app.include_router(monitor_routes.router)
    app.include_router(message_routes.router)
    app.include_router(login_routes.router)
    app.include_router(build_frontend_router())
    app.mount(UPLOADS_URL, StaticFiles(directory=settings.uploads_dir), name="uploads")
    app.mount(OUTPUTS_URL, StaticFiles(directory=settings.outputs_dir), name="outputs")
    install_body_limits(app, settings)  # before auth, so it runs after the token check
    install_auth(app, settings)
    app.add_middleware(_LoopbackOnlyWithoutToken, settings=settings)
    return app


class _LazyApp:
    """`backend.app:app`: the studio built on the first ASGI call (the lifespan start), so that
    importing this module creates nothing."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None
        self._lock = threading.Lock()

    def _get(self) -> FastAPI:
        with self._lock:
            if self._app is None:
                self._app = create_app()
            return self._app

    async def __call__(self, scope, receive, send):
        await self._get()(scope, receive, send)


app = _LazyApp()
