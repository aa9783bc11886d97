"""Access control on the real studio: uvicorn on loopback, every route of the API contract, the
WebSockets and the stored files, with no token, a wrong token and the right one."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from backend.app import create_app
from backend.utils.config import Settings
from tests.helpers.server import ROOT, StudioServer, free_port

TOKEN = "right-token-0123456789"
OPEN = {("GET", "/api/health"), ("GET", "/api/auth"), ("POST", "/api/login"), ("POST", "/api/logout")}


def every_route(tmp_path) -> list[tuple[str, str]]:
    """Every HTTP route the app declares (from its OpenAPI schema, so new routes are covered)."""
    app = create_app(Settings(_env_file=None, data_dir=tmp_path / "schema"))
    routes = []
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            routes.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    routes += [
        ("GET", "/files/uploads/x.png"),
        ("GET", "/files/outputs/x/final.mp4"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
    ]
    return routes


SERVER_ENV = {"STUDIO_TOKEN": TOKEN, "STUDIO_LOGIN_MAX_FAILURES": "1000"}


@pytest.fixture(scope="module")
def server(server):
    """The folder's server, with one stored upload to ask for."""
    (server.data_dir / "uploads").mkdir(parents=True, exist_ok=True)
    (server.data_dir / "uploads" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return server


def test_every_route_needs_the_token(server, tmp_path):
    routes = every_route(tmp_path)
    assert len(routes) >= 12
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for method, path in routes:
            body = {} if method == "POST" else None
            none = c.request(method, path, json=body)
            wrong = c.request(method, path, json=body, headers={"Authorization": "Bearer wrong"})
            right = c.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            if (method, path) in OPEN:
                # Reachable without a token; login itself refuses an empty token.
                expected_none = 401 if path == "/api/login" else 200
                assert none.status_code == expected_none, (path, none.status_code)
                continue
            assert none.status_code == 401, (method, path, none.status_code)
            assert wrong.status_code == 401, (method, path, wrong.status_code)
            assert right.status_code not in (401, 403, 429), (method, path, right.status_code, right.text)
            assert "detail" in none.json()


def test_health_says_nothing_about_jobs_or_files(server):
    r = httpx.get(server.url + "/api/health")
    assert r.status_code == 200
    data, text = r.json(), r.text.lower()
    assert "jobs" not in data and "/files/" not in text and "uploads" not in text and TOKEN not in r.text


def test_login_cookie_opens_api_files_and_websocket(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.post("/api/login", json={"token": "nope"}).status_code == 401
        r = c.post("/api/login", json={"token": TOKEN})
        assert r.status_code == 200
        assert c.get("/api/jobs").status_code == 200
        r = c.get("/files/uploads/x.png")
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())

    async def first_message(url, **kw):
        async with websockets.connect(url, open_timeout=10, **kw) as ws:
            return json_type(await asyncio.wait_for(ws.recv(), 10))

    def json_type(raw):
        import json

        return json.loads(raw)["type"]

    assert asyncio.run(first_message(server.ws_url, additional_headers={"Cookie": cookie})) == "snapshot"
    assert asyncio.run(first_message(f"{server.ws_url}?token={TOKEN}")) == "snapshot"


@pytest.mark.parametrize("path", ["/ws", "/ws/monitor"])
@pytest.mark.parametrize("query", ["", "?token=wrong"])
def test_websocket_is_closed_1008_before_any_event(server, path, query):
    async def attempt():
        async with websockets.connect(server.url.replace("http", "ws") + path + query, open_timeout=10) as ws:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            return info.value.rcvd.code

    assert asyncio.run(attempt()) == 1008


@pytest.mark.slow
def test_python_m_backend_behind_a_tunnel_generates_and_enforces_a_token(tmp_path):
    port = free_port()
    env = {k: v for k, v in StudioServer(tmp_path).env.items() if k != "STUDIO_TOKEN"}
    env.update({"STUDIO_BEHIND_TUNNEL": "true", "STUDIO_PORT": str(port), "STUDIO_ALLOW_OPEN_LAN": "true"})
    log = tmp_path / "main.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/api/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        match = re.search(r"Access token: (\S+)", log.read_text())
        assert match, log.read_text()
        token = match.group(1)
        assert httpx.get(url + "/api/jobs").status_code == 401
        assert httpx.get(url + "/api/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
