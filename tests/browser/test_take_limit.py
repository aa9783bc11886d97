"""The storyboard in the real page says when a transition keeps all the takes it may (Korean and
English), instead of offering a re-roll the server would refuse."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers.browser import REQUIREMENTS, chromium_context, offline_page, open_fresh_studio, screenshot
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload_scenes

pytestmark = REQUIREMENTS


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_page_says_when_a_transition_has_all_the_takes_it_may_keep(tmp_path, lang):
    with (
        StudioServer(tmp_path, {"STUDIO_DEFAULT_ENGINE": "morph", "STUDIO_MAX_TAKES_KEPT": "1"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
        chromium_context(tmp_path / "profile") as browser,
    ):
        ids = upload_scenes(c, 2)
        job_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 64}}).json()["id"]
        assert wait_for(c, job_id)["status"] == "completed"
        page = offline_page(browser, srv.url)
        open_fresh_studio(page, srv.url, lang)
        page.wait_for_selector("[data-testid=storyboard] [data-testid=take-limit]", timeout=30_000)
        assert page.locator("[data-testid=take-reroll]").count() == 0
        text = page.inner_text("[data-testid=take-limit]")
        assert ("최대 1개" in text) if lang == "ko" else ("At most 1 takes" in text), text
        screenshot(page, f"take-limit-{lang}.png")
