"""The page's defaults, limits and finished statuses are the server's (GET /api/meta), not copies:
the real page in Debian's Chromium shows what the server says, and follows when it says otherwise."""

from __future__ import annotations

import json

import httpx

from tests.helpers.browser import REQUIREMENTS, open_fresh_studio
from tests.helpers.browser import offline_page as _page

pytestmark = REQUIREMENTS


SERVER_ENV = {"STUDIO_MAX_SECONDS_PER_TRANSITION": "7", "STUDIO_DEFAULT_ENGINE": "morph"}  # the folder's `server`


def _open(context, server, meta: dict | None = None):
    """A fresh studio page (no saved draft); with `meta`, /api/meta answers that body instead."""
    page = _page(context, server.url)
    if meta is not None:
        page.route(
            server.url + "/api/meta",
            lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(meta)),
        )
    return open_fresh_studio(page, server.url)


def _shown(page) -> dict:
    mode = page.eval_on_selector("[data-testid=post-mode] input:checked", "e => e.value")
    return {
        "seconds": page.inner_text("[data-testid=seconds-value]"),
        "seconds_max": page.get_attribute("[data-testid=seconds]", "max"),
        "quality": page.input_value("[data-testid=quality]"),
        "strength": page.input_value("[data-testid=strength]"),
        "resolution": page.input_value("[data-testid=resolution]"),
        "seed": page.input_value("[data-testid=seed]"),
        "post_mode": mode,
    }


def _expected(meta: dict) -> dict:
    s = meta["defaults"]["settings"]
    return {
        "seconds": f"{s['seconds']:.1f} s",
        "seconds_max": f"{meta['limits']['max_seconds_per_transition']:g}",
        "quality": str(s["quality"]),
        "strength": str(s["strength"]),
        "resolution": str(s["resolution"]),
        "seed": "" if s["seed"] is None else str(s["seed"]),
        "post_mode": meta["defaults"]["postprocess"]["mode"],
    }


def _finished(page, statuses: list[str]) -> dict[str, bool]:
    # The page's own module instance (same URL): the one its job list uses.
    return page.evaluate(
        """async (statuses) => {
      const store = await import('/js/lib/jobs-store.js');
      return Object.fromEntries(statuses.map((s) => [s, store.isFinished({status: s})]));
    }""",
        statuses,
    )


def test_the_page_shows_the_servers_defaults_limits_and_statuses(browser, server):
    meta = httpx.get(server.url + "/api/meta").json()
    assert meta["limits"]["max_seconds_per_transition"] == 7
    page = _open(browser, server)
    assert _shown(page) == _expected(meta)
    # What a fresh page submits is what the server would fill in for a job that sets nothing.
    body = page.evaluate("() => JSON.parse(localStorage.getItem('studio.draft'))")
    assert body["post"] == meta["defaults"]["postprocess"]
    assert body["settings"] == meta["defaults"]["settings"]
    finished = _finished(page, meta["statuses"]["all"])
    assert finished == {s: s in meta["statuses"]["finished"] for s in meta["statuses"]["all"]}
    assert finished["interrupted"] is False  # it resumes by itself: the card keeps its Cancel button
    assert page.js_errors == []
    page.close()


def test_the_page_follows_what_the_server_says(browser, server):
    meta = httpx.get(server.url + "/api/meta").json()
    changed = json.loads(json.dumps(meta))
    changed["defaults"]["settings"].update(seconds=3.5, quality=40, strength=80, resolution=384, seed=77)
    changed["defaults"]["postprocess"]["mode"] = "manual"
    changed["limits"]["max_seconds_per_transition"] = 9
    changed["statuses"]["finished"] = ["completed"]
    page = _open(browser, server, changed)
    # The resolution the page starts at is the memory plan's bucket for the server's GPU
    # (/api/health defaults.resolution), which takes the place of the job default once health answers.
    planned = httpx.get(server.url + "/api/health", timeout=10).json()["defaults"]["resolution"]
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=resolution]')?.value === '{planned}'", timeout=15_000
    )
    assert _shown(page) == {**_expected(changed), "resolution": str(planned)}
    assert page.locator("[data-testid=post-manual]").count() == 1
    assert _finished(page, ["completed", "failed", "interrupted"]) == {
        "completed": True,
        "failed": False,
        "interrupted": False,
    }
    assert page.js_errors == []
    page.close()
