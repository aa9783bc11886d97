"""The login limit really stops guessing, sessions end at logout, and the token never reaches a
log line. In-process for the rules, a real uvicorn on loopback for what depends on the server
(X-Forwarded-For handling, access logs)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from backend.web.request_info import COOKIE_NAME
from tests.helpers.auth_app import TOKEN, make_app
from tests.helpers.server import StudioServer

RIGHT = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer guess"}


def _lock_out(c: TestClient, n: int) -> None:
    for _ in range(n):
        assert c.get("/api/jobs", headers=WRONG).status_code == 401


def test_a_limited_client_gets_429_whatever_it_sends(tmp_path):
    app = make_app(tmp_path, token=TOKEN, login_max_failures=3, login_window_s=60)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.post("/api/login", json={"token": TOKEN}).status_code == 200  # a session first
        session = c.cookies[COOKIE_NAME]
        c.cookies.clear()
        _lock_out(c, 3)
        # The right bearer token, a valid session, nothing at all, and the open auth routes:
        # all refused until the window passes, so a lucky guess is never confirmed.
        attempts = {
            "right bearer": c.get("/api/jobs", headers=RIGHT),
            "right bearer, POST": c.post("/api/jobs", headers=RIGHT, json={}),
            "valid session": c.get("/api/jobs", headers={"Cookie": f"{COOKIE_NAME}={session}"}),
            "no token": c.get("/api/jobs"),
            "file with the right token": c.get("/files/uploads/a.png", headers=RIGHT),
            "auth status, right bearer": c.get("/api/auth", headers=RIGHT),
            "login, right token": c.post("/api/login", json={"token": TOKEN}),
        }
        for what, r in attempts.items():
            assert r.status_code == 429, (what, r.status_code, r.text)
            assert int(r.headers["retry-after"]) >= 1
            assert "Too many failed attempts" in r.json()["detail"] and "초" in r.json()["detail"]
        with pytest.raises(WebSocketDisconnect) as closed:
            with c.websocket_connect(f"/ws?token={TOKEN}") as ws:
                ws.receive_json()
        assert closed.value.code == 1008
        # Open routes that check no token stay open.
        assert c.get("/api/health").status_code == 200


def test_open_auth_status_counts_wrong_bearer_tokens(tmp_path):
    app = make_app(tmp_path, token=TOKEN, login_max_failures=5, login_window_s=60)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        for _ in range(5):
            r = c.get("/api/auth", headers=WRONG)
            assert r.status_code == 200 and r.json() == {"required": True, "authenticated": False}
        assert c.get("/api/auth", headers=WRONG).status_code == 429
        assert c.get("/api/auth", headers=RIGHT).status_code == 429
        assert c.post("/api/login", json={"token": TOKEN}).status_code == 429


def test_the_page_asking_without_a_token_is_not_a_guess(tmp_path):
    app = make_app(tmp_path, token=TOKEN, login_max_failures=2, login_window_s=60)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        for _ in range(10):
            assert c.get("/api/auth").json() == {"required": True, "authenticated": False}
        assert c.get("/api/auth", headers=RIGHT).json() == {"required": True, "authenticated": True}


def test_logout_revokes_the_session_on_the_server(tmp_path):
    app = make_app(tmp_path, token=TOKEN)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.post("/api/login", json={"token": TOKEN}).status_code == 200
        session = c.cookies[COOKIE_NAME]
        kept = {"Cookie": f"{COOKIE_NAME}={session}"}
        c.cookies.clear()
        assert c.get("/api/jobs", headers=kept).status_code == 200
        assert c.post("/api/logout", headers=kept).status_code == 200
        # A copy of the cookie kept anywhere (another tab, a stolen copy) no longer opens anything.
        assert c.get("/api/jobs", headers=kept).status_code == 401
        assert c.get("/api/auth", headers=kept).json()["authenticated"] is False
        with pytest.raises(WebSocketDisconnect) as closed:
            with c.websocket_connect("/ws", headers=kept) as ws:
                ws.receive_json()
        assert closed.value.code == 1008
        # Logging in again gives a new, working session.
        assert c.post("/api/login", json={"token": TOKEN}).status_code == 200
        assert c.cookies[COOKIE_NAME] != session
        assert c.get("/api/jobs").status_code == 200


def test_sessions_survive_a_restart_and_end_when_the_token_changes(tmp_path):
    with TestClient(make_app(tmp_path, token=TOKEN), base_url="http://127.0.0.1:8000") as c:
        c.post("/api/login", json={"token": TOKEN})
        kept = {"Cookie": f"{COOKIE_NAME}={c.cookies[COOKIE_NAME]}"}
    stored = (tmp_path / ".sessions.json").read_text()
    assert kept["Cookie"].split("=", 1)[1] not in stored and TOKEN not in stored
    with TestClient(make_app(tmp_path, token=TOKEN), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/jobs", headers=kept).status_code == 200
    with TestClient(make_app(tmp_path, token="another-token-entirely"), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/jobs", headers=kept).status_code == 401


def _guess_with_rotating_forwarded_for(url: str, n: int) -> list[int]:
    with httpx.Client(base_url=url, timeout=10) as c:
        return [
            c.get("/api/jobs", headers={**WRONG, "X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(n)
        ]


@pytest.mark.slow
def test_rotating_x_forwarded_for_from_loopback_does_not_reset_the_limit(tmp_path):
    # Started as `uvicorn backend.app:create_app --factory`: uvicorn's proxy headers are on and
    # trust loopback by default, so the header would otherwise choose the counted address.
    env = {"STUDIO_TOKEN": TOKEN, "STUDIO_LOGIN_MAX_FAILURES": "3"}
    (tmp_path / "untrusted").mkdir()
    (tmp_path / "trusted").mkdir()
    with StudioServer(tmp_path / "untrusted", env) as server:
        codes = _guess_with_rotating_forwarded_for(server.url, 6)
        assert codes == [401, 401, 401, 429, 429, 429], codes
        r = httpx.get(server.url + "/api/jobs", headers={**RIGHT, "X-Forwarded-For": "198.51.100.7"}, timeout=10)
        assert r.status_code == 429
    # With the proxy configured, each forwarded address is its own client (behind a real proxy
    # every user comes from the proxy's address).
    env["STUDIO_TRUSTED_PROXIES"] = "127.0.0.1"
    with StudioServer(tmp_path / "trusted", env) as server:
        assert _guess_with_rotating_forwarded_for(server.url, 6) == [401] * 6
        same = [
            httpx.get(
                server.url + "/api/jobs", timeout=10, headers={**WRONG, "X-Forwarded-For": "203.0.113.200"}
            ).status_code
            for _ in range(4)
        ]
        assert same == [401, 401, 401, 429]


def test_the_token_never_reaches_the_access_log(tmp_path):
    with StudioServer(tmp_path, {"STUDIO_TOKEN": TOKEN}, log_level="info") as server:

        async def websocket():
            async with websockets.connect(f"{server.ws_url}?token={TOKEN}", open_timeout=10) as ws:
                return await asyncio.wait_for(ws.recv(), 10)

        assert '"snapshot"' in asyncio.run(websocket())
        r = httpx.get(f"{server.url}/api/jobs?token={TOKEN}&x=1", headers=RIGHT, timeout=10)
        assert r.status_code == 200
    log = server.log()
    assert "WebSocket /ws?token=[redacted]" in log, log[-2000:]
    assert "/api/jobs?token=[redacted]&x=1" in log, log[-2000:]
    assert TOKEN not in log
