"""The page labels the memory plan's quality-affecting choices (8-bit weights, fp16 compute).

The real server on loopback and the real page in headless Chromium; only /api/health's FramePack
entry is given a plan (a loaded model would need real weights), the rest is the server's own.
"""

from __future__ import annotations

import json

from tests.helpers.browser import REQUIREMENTS, chromium_context
from tests.helpers.server import StudioServer

pytestmark = REQUIREMENTS

PLAN = {
    "mode": "partial",
    "dtype": "fp16",
    "weights": "8bit",
    "blocks_gpu": 40,
    "blocks_ram": 20,
    "blocks_disk": 0,
    "quality": ["8-bit weights", "fp16 compute"],
}


SERVER_ENV = {"STUDIO_DEFAULT_ENGINE": "morph"}  # the folder's `server`


def _page(context, url: str, plan: dict | None):
    page = context.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())

    def health(route):
        response = route.fetch()
        body = response.json()
        if plan is not None:
            body["engines"]["framepack"] = {**body["engines"].get("framepack", {}), "ready": True, "plan": plan}
        route.fulfill(
            response=response, body=json.dumps(body), headers={**response.headers, "content-type": "application/json"}
        )

    page.route("**/api/health", health)
    return page


def test_the_plan_s_quality_notes_are_shown_and_absent_without_them(server, tmp_path):
    with chromium_context(tmp_path / "profile") as context:
        page = _page(context, server.url, PLAN)
        page.goto(server.url + "/")
        note = page.wait_for_selector("[data-testid=engine-plan-quality]", timeout=20_000)
        text = note.inner_text()
        assert ("8-bit" in text or "8비트" in text) and "fp16" in text, text
        page.close()
        plain = _page(context, server.url, {**PLAN, "dtype": "bf16", "weights": "2byte"})
        plain.goto(server.url + "/")
        plain.wait_for_selector("[data-testid=engine]")
        plain.wait_for_timeout(500)
        assert plain.query_selector("[data-testid=engine-plan-quality]") is None
        plain.close()


def test_the_server_s_default_resolution_is_its_plan_s(server):
    """On this machine (CPU) the page starts at 640; STUDIO_PLAN_BUCKET caps it (next test)."""
    import httpx

    assert httpx.get(server.url + "/api/health", timeout=10).json()["defaults"]["resolution"] == 640


def test_the_page_starts_at_the_server_s_resolution_and_keeps_one_the_user_chose(tmp_path):
    """A server whose plan stops at the 480 bucket (a T4's default) makes the page start at 480;
    a resolution the user picked survives a reload; one left at the default follows the server."""
    import httpx

    from tests.helpers.browser import offline_page

    env = {"STUDIO_DEFAULT_ENGINE": "morph", "STUDIO_PLAN_BUCKET": "480"}
    (tmp_path / "server").mkdir()
    with StudioServer(tmp_path / "server", env) as small, chromium_context(tmp_path / "profile") as context:
        assert httpx.get(small.url + "/api/health", timeout=10).json()["defaults"]["resolution"] == 480
        page = offline_page(context, small.url)
        with page.expect_response("**/api/health"):
            page.goto(small.url + "/")
        page.wait_for_function(
            "() => document.querySelector('[data-testid=resolution]')?.value === '480'", timeout=20_000
        )
        assert "480px" in page.inner_text("[data-testid=resolution]")
        page.select_option("[data-testid=resolution]", "768")
        page.wait_for_function(
            "() => (JSON.parse(localStorage.getItem('studio.draft')) || {}).settings?.resolution === 768"
        )
        with page.expect_response("**/api/health"):
            page.reload()
        page.wait_for_timeout(500)  # the health answer has been applied by now
        assert page.input_value("[data-testid=resolution]") == "768"
        page.select_option("[data-testid=resolution]", "480")
        with page.expect_response("**/api/health"):
            page.reload()
        page.wait_for_timeout(500)
        assert page.input_value("[data-testid=resolution]") == "480"
        assert page.js_errors == []
