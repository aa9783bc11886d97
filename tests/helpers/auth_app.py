"""A small app with the same kinds of routes as the studio (API routes, a mounted static file folder
and a WebSocket) behind the studio's real access-control middleware."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.staticfiles import StaticFiles

from backend.utils.config import Settings
from backend.web.auth_middleware import install_auth
from backend.web.routes.login import router

TOKEN = "s3cret-token-for-tests"


def make_app(tmp_path: Path, **overrides) -> FastAPI:
    # Starlette's WebSocket test client always names its host "testserver".
    settings = Settings(_env_file=None, data_dir=tmp_path, allowed_hosts="testserver", **overrides)
    files = tmp_path / "uploads"
    files.mkdir(exist_ok=True)
    (files / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (files / "evil.html").write_text("<script>alert(1)</script>")
    (files / "evil.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    app = FastAPI()
    app.state.settings = settings
    install_auth(app, settings)
    app.include_router(router)

    @app.get("/api/health")
    async def health():
        return {"status": "ok"}

    @app.get("/api/jobs")
    async def jobs():
        return {"jobs": []}

    @app.post("/api/jobs")
    async def create_job():
        return {"id": "x"}

    @app.get("/")
    async def page():
        return {"page": True}

    @app.websocket("/ws")
    async def ws(socket: WebSocket):
        await socket.accept()
        await socket.send_json({"type": "snapshot", "jobs": []})
        await socket.close()

    app.mount("/files/uploads", StaticFiles(directory=files), name="uploads")
    return app
