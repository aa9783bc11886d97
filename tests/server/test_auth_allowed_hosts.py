"""DNS rebinding against the default set-up (loopback, no token): only hosts the studio is really
served as are answered, on HTTP and WebSocket alike. Real uvicorn on loopback, real clients."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from backend.utils.config import Settings
from backend.web.access_policy import HostPolicy, split_host
from tests.helpers.images import encoded, scene

EVIL = "rebind.attacker.example"


SERVER_ENV = {"STUDIO_ALLOWED_HOSTS": "studio.example.org,.tunnel.example"}  # the folder's `server`


def _as(host: str, port: int) -> dict[str, str]:
    # What a rebinding page sends: its own host, and an Origin equal to it (same-origin for the browser).
    return {"Host": f"{host}:{port}", "Origin": f"http://{host}:{port}"}


def test_a_rebinding_host_can_neither_read_nor_write(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        files = [("files", (f"s{i}.png", encoded(scene(48, 48, shift=4 * i)), "image/png")) for i in range(2)]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        evil = _as(EVIL, server.port)
        attempts = [
            c.post("/api/jobs", headers=evil, json={"images": ids, "engine": "morph"}),
            c.get("/api/jobs", headers=evil),
            c.delete("/api/jobs/abc", headers=evil),
            c.get(f"/files/uploads/{ids[0]}.png", headers=evil),
            c.post("/api/uploads", headers=evil, files=files),
            c.get("/", headers=evil),
        ]
        for r in attempts:
            assert r.status_code == 400, (r.request.method, r.request.url, r.status_code)
            detail = r.json()["detail"]
            assert "STUDIO_ALLOWED_HOSTS" in detail and "스튜디오" in detail
        assert c.get("/api/jobs").json()["jobs"] == []  # nothing was created
        # Loopback names and addresses, and the configured hosts, still work.
        for host in ("127.0.0.1", "localhost", "studio.example.org", "a.tunnel.example"):
            r = c.get("/api/jobs", headers=_as(host, server.port))
            assert r.status_code == 200, (host, r.status_code)
        # X-Forwarded-Host is not believed from a client that is not a configured proxy.
        r = c.get("/api/jobs", headers={"Host": f"{EVIL}:{server.port}", "X-Forwarded-Host": "localhost"})
        assert r.status_code == 400


def test_a_rebinding_host_gets_no_websocket(server):
    async def connect(host: str):
        async with websockets.connect(server.ws_url, additional_headers=_as(host, server.port), open_timeout=10) as ws:
            try:
                return await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as closed:
                return closed

    refused = asyncio.run(connect(EVIL))
    assert isinstance(refused, websockets.ConnectionClosed)
    assert refused.rcvd.code == 1008 and "STUDIO_ALLOWED_HOSTS" in refused.rcvd.reason
    assert '"snapshot"' in asyncio.run(connect("127.0.0.1"))


@pytest.mark.parametrize(
    "raw,host",
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("LocalHost", "localhost"),
        ("a.example.org.", "a.example.org"),
        ("::1", "::1"),
    ],
)
def test_split_host(raw, host):
    assert split_host(raw) == host


def test_host_policy_from_settings():
    policy = HostPolicy.from_settings(
        Settings(
            _env_file=None,
            host="studio.lan",
            allowed_hosts="*.ngrok-free.app, Box.Example",
            cors_origins="https://app.example.net",
            trusted_proxies="10.0.0.5",
        )
    )
    for ok in (
        "localhost",
        "x.localhost",
        "127.0.0.1",
        "192.168.1.20",
        "::1",
        "studio.lan",
        "abc.ngrok-free.app",
        "box.example",
        "app.example.net",
    ):
        assert policy.allows(ok), ok
    for bad in ("rebind.attacker.example", "ngrok-free.app.evil.example", "example.net", "studio.lan.evil"):
        assert not policy.allows(bad), bad
    scope = {
        "type": "http",
        "client": ("10.0.0.5", 1),
        "headers": [(b"host", b"evil"), (b"x-forwarded-host", b"studio.lan")],
    }
    assert policy.request_host(scope) == "studio.lan"
    scope["client"] = ("10.0.0.6", 1)
    assert policy.request_host(scope) == "evil"
    tunnel = HostPolicy.from_settings(Settings(_env_file=None, behind_tunnel=True))
    assert tunnel.trusted_proxies == {"127.0.0.1", "::1"}
