"""The page as a new user meets it on a machine without FramePack's weights: the real server
(defaults: FramePack from the hub, nothing downloaded, the hub unreachable) and the real page in
Debian's headless Chromium. Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import httpx

from tests.helpers.browser import REQUIREMENTS
from tests.helpers.browser import offline_page as _page
from tests.helpers.browser import screenshot as _screenshot
from tests.helpers.images import save, scene
from tests.helpers.server import StudioServer

pytestmark = REQUIREMENTS


def test_a_new_user_without_framepack_gets_morph_and_is_told_why(browser, tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "empty-hf-cache"), "STUDIO_DEFAULT_ENGINE": "framepack"}
    with StudioServer(tmp_path, env) as server:
        fix = httpx.get(server.url + "/api/health").json()["engines"]["framepack"]["fix"]
        page = _page(browser, server.url)
        page.goto(server.url + "/")
        page.wait_for_selector("[data-testid=socket-status][data-state=open]")
        # The engine choice: morph selected, FramePack greyed out and marked, the reason and the fix shown.
        page.wait_for_selector("[data-testid=engine-notice]")
        assert page.is_checked("[data-testid=engine] input[value=morph]")
        assert page.is_disabled("[data-testid=engine] input[value=framepack]")
        assert page.inner_text("[data-testid=engine-framepack-state]") == "(not installed)"
        notice = page.inner_text("[data-testid=engine-notice]")
        assert "FramePack is not installed" in notice and "morph" in notice
        assert page.inner_text("[data-testid=engine-fix]") == fix
        assert "lllyasviel/FramePackI2V_HY" in page.inner_text("[data-testid=engine-reason]")

        files = [save(scene(160, 120, shift=14 * i, hue=70 * i), tmp_path / f"p{i}.png") for i in range(3)]
        page.set_input_files("[data-testid=file-input]", [str(f) for f in files])
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=image-card]')].filter(e => e.dataset.uploadId).length === 3"
        )
        # Analysis is offline here: the panel says so instead of spinning, and the video can be made.
        page.wait_for_selector("[data-testid=suggestions][data-state=limited]", timeout=60_000)
        page.click("[data-testid=post-mode] label:has-text('Off')")
        page.select_option("[data-testid=resolution]", "256")
        page.click("[data-testid=submit]")
        page.wait_for_selector("[data-testid=job-card]", timeout=5_000)  # no spinner waiting on a model
        page.wait_for_selector("[data-testid=job-video]", timeout=180_000)
        job_id = page.get_attribute("[data-testid=job-card]", "data-job-id")
        job = httpx.get(f"{server.url}/api/jobs/{job_id}").json()
        assert job["engine"] == "morph" and job["status"] == "completed"
        _screenshot(page, "studio-first-run-no-framepack.png")

        page.click("[data-testid=lang-toggle]")
        assert "FramePack이 설치되지 않았습니다" in page.inner_text("[data-testid=engine-notice]")
        assert "설치 안 됨" in page.inner_text("[data-testid=engine-framepack-state]")
        _screenshot(page, "studio-first-run-no-framepack-ko.png")
        assert page.js_errors == []
        page.close()
