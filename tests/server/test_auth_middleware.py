"""The access-control middleware on a small app with the same kinds of routes as the studio:
API routes, a mounted static file folder and a WebSocket (in-process, through Starlette's client)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from backend.web.access_policy import FailureLimiter, tokens_equal
from backend.web.request_info import COOKIE_NAME
from tests.helpers.auth_app import TOKEN, make_app


@pytest.fixture
def client(tmp_path):
    with TestClient(make_app(tmp_path, token=TOKEN), base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest.fixture
def open_client(tmp_path):
    with TestClient(make_app(tmp_path), base_url="http://127.0.0.1:8000") as c:
        yield c


CLOSED = [
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("GET", "/files/uploads/a.png"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("GET", "/api/nothing-here"),
]


@pytest.mark.parametrize("method,path", CLOSED)
def test_closed_routes_need_the_token(client, method, path):
    r = client.request(method, path)
    assert r.status_code == 401
    assert "token" in r.json()["detail"] and "토큰" in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code != 401


def test_health_and_pages_stay_open(client):
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert client.get("/").status_code == 200
    # ... but only for reading: writes to an open page path still need the token.
    assert client.post("/").status_code == 401
    assert client.get("/api/auth").json() == {"required": True, "authenticated": False}


def test_dot_segments_do_not_open_a_closed_route(client):
    assert client.get("/vendor/../api/jobs").status_code in (401, 404)
    r = client.get("/vendor/%2e%2e/api/jobs")
    assert r.status_code != 200


def test_login_sets_a_cookie_that_opens_everything(client):
    assert client.post("/api/login", json={"token": "wrong"}).status_code == 401
    r = client.post("/api/login", json={"token": TOKEN})
    assert r.status_code == 200
    set_cookie = r.headers["set-cookie"]
    session = r.cookies[COOKIE_NAME]
    assert f"{COOKIE_NAME}={session}" in set_cookie and len(session) >= 32
    assert TOKEN not in set_cookie  # the cookie never carries the token itself
    assert "httponly" in set_cookie.lower() and "samesite=strict" in set_cookie.lower()
    assert client.get("/api/jobs").status_code == 200
    assert client.get("/files/uploads/a.png").status_code == 200
    assert client.get("/api/auth").json() == {"required": True, "authenticated": True}
    # (the test client's WebSocket does not use its cookie jar; a browser sends the cookie)
    cookie = {"Cookie": f"{COOKIE_NAME}={session}"}
    with client.websocket_connect("/ws", headers=cookie) as ws:
        assert ws.receive_json()["type"] == "snapshot"
    client.post("/api/logout")
    assert client.get("/api/jobs").status_code == 401


def test_a_forged_cookie_is_refused(client):
    client.cookies.set(COOKIE_NAME, TOKEN)  # the raw token is not a valid session value
    assert client.get("/api/jobs").status_code == 401


def test_websocket_without_or_with_wrong_token_closes_1008_before_any_event(client):
    for url in ("/ws", "/ws?token=wrong"):
        with client.websocket_connect(url) as ws:
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_json()
            assert info.value.code == 1008
    with client.websocket_connect(f"/ws?token={TOKEN}") as ws:
        assert ws.receive_json()["type"] == "snapshot"
    with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_failed_attempts_are_rate_limited_per_client(tmp_path):
    app = make_app(tmp_path, token=TOKEN, login_max_failures=3, login_window_s=60)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        for _ in range(3):
            assert c.post("/api/login", json={"token": "guess"}).status_code == 401
        r = c.post("/api/login", json={"token": TOKEN})  # even the right token waits now
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "초" in r.json()["detail"]
        # Guessing through the API instead of the login route is limited by the same count.
        assert c.get("/api/jobs", headers={"Authorization": "Bearer guess"}).status_code == 429


def test_limiter_window_slides():
    now = [0.0]
    lim = FailureLimiter(max_failures=2, window_s=10, clock=lambda: now[0])
    lim.record_failure("a")
    lim.record_failure("a")
    assert lim.retry_after("a") == 10 and lim.retry_after("b") == 0
    now[0] = 9.5
    assert lim.retry_after("a") == 1
    now[0] = 10.0
    assert lim.retry_after("a") == 0


def test_token_compare():
    assert tokens_equal("abc", "abc")
    assert not tokens_equal("abc", "abd") and not tokens_equal("", "abc") and not tokens_equal("abcd", "abc")


def test_files_are_never_served_as_html(open_client):
    r = open_client.get("/files/uploads/a.png")
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    for name in ("evil.html", "evil.svg"):
        r = open_client.get(f"/files/uploads/{name}")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-disposition"] == "attachment"
        assert "sandbox" in r.headers["content-security-policy"]
    assert open_client.get("/api/jobs").headers["x-content-type-options"] == "nosniff"


def test_without_token_everything_is_open_but_cors_stays_closed(open_client):
    assert open_client.get("/api/jobs").status_code == 200
    assert open_client.get("/api/auth").json() == {"required": False, "authenticated": True}
    r = open_client.options(
        "/api/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers
    r = open_client.get("/api/jobs", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cross_site_writes_and_websockets_are_refused(open_client):
    r = open_client.post("/api/jobs", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert open_client.post("/api/jobs", headers={"Origin": "http://127.0.0.1:8000"}).status_code == 200
    with open_client.websocket_connect("/ws", headers={"Origin": "https://evil.example"}) as ws:
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_json()
        assert info.value.code == 1008
    with open_client.websocket_connect("ws://127.0.0.1:8000/ws", headers={"Origin": "http://127.0.0.1:8000"}) as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_cors_opens_only_for_listed_origins(tmp_path):
    app = make_app(tmp_path, cors_origins="https://ok.example")
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        r = c.options(
            "/api/jobs",
            headers={"Origin": "https://ok.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.headers["access-control-allow-origin"] == "https://ok.example"
        assert c.post("/api/jobs", headers={"Origin": "https://ok.example"}).status_code == 200
        assert c.post("/api/jobs", headers={"Origin": "https://bad.example"}).status_code == 403
