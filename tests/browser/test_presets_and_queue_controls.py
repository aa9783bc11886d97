"""The page, in Chromium, in Korean and English: the preset picker (a built-in applied, one saved,
renamed, a built-in's delete refused with the catalogue's sentence) and the queue controls (up and
down move a queued job, cancel all queued), against a real server."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers.browser import REQUIREMENTS, chromium_context, offline_page, open_fresh_studio, screenshot
from tests.helpers.images import scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload

pytestmark = REQUIREMENTS

WORDS = {
    "en": {"builtin_refused": "is a built-in preset", "queue": "Queue #1", "cancel_all": "Cancel all queued"},
    "ko": {"builtin_refused": "기본 프리셋이라", "queue": "대기 1번", "cancel_all": "대기 작업 모두 취소"},
}


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_presets_and_queue_controls_on_the_page(tmp_path, lang):
    words = WORDS[lang]
    with StudioServer(tmp_path, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv, chromium_context(tmp_path / "p") as ctx:
        page = offline_page(ctx, srv.url)
        open_fresh_studio(page, srv.url, lang)

        # A built-in preset sets the sliders.
        page.wait_for_selector("[data-testid=preset-select] option[value=builtin-final]", state="attached")
        page.select_option("[data-testid=preset-select]", "builtin-final")
        page.wait_for_function("document.querySelector('[data-testid=quality]').value === '100'")
        page.select_option("[data-testid=preset-select]", "builtin-draft")
        page.wait_for_function("document.querySelector('[data-testid=quality]').value === '20'")
        # Deleting a built-in is refused with the catalogue's sentence in the page's language.
        page.click("[data-testid=preset-delete]")
        assert words["builtin_refused"] in page.text_content("[data-testid=preset-error]")

        # Save the composer under a name, rename it; the server keeps it.
        page.fill("[data-testid=preset-name]", f"mine {lang}")
        page.click("[data-testid=preset-save]")
        page.wait_for_selector("[data-testid=preset-note]")
        page.fill("[data-testid=preset-name]", f"renamed {lang}")
        page.click("[data-testid=preset-rename]")
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            page.wait_for_function(
                "n => [...document.querySelectorAll('[data-testid=preset-select] option')].some(o => o.textContent === n)",
                arg=f"renamed {lang}",
            )
            saved = next(p for p in client.get("/api/presets").json()["presets"] if p["name"] == f"renamed {lang}")
            assert saved["settings"]["settings"]["quality"] == 20

            # The queue: a long job holds the lane, three short ones wait behind it.
            ids = upload(client, [scene(64, 64, shift=3 * i, hue=20 * i) for i in range(12)])
            slow = client.post(
                "/api/jobs",
                json={"images": ids, "engine": "morph", "settings": {"seconds": 20, "resolution": 384}},
            ).json()["id"]
            wait_for(client, slow, until=lambda j: j["status"] == "running", timeout=60)
            short = {"images": ids[:2], "engine": "morph", "settings": {"seconds": 0.5, "resolution": 64}}
            a, b, c = (client.post("/api/jobs", json=short).json()["id"] for _ in range(3))

            cards = "[data-testid=job-card][data-status=queued]"
            page.wait_for_function(f"document.querySelectorAll('{cards}').length === 3")
            order = lambda: page.eval_on_selector_all(cards, "els => els.map(e => e.dataset.jobId)")  # noqa: E731
            assert order() == [a, b, c]
            assert page.locator(cards).first.locator("[data-testid=job-queue-place]").text_content() == words["queue"]
            page.locator(f"[data-job-id='{c}'] [data-testid=job-up]").click()  # a b c -> a c b
            page.wait_for_function(f"document.querySelectorAll('{cards}')[1].dataset.jobId === '{c}'")
            page.locator(f"[data-job-id='{a}'] [data-testid=job-down]").click()  # a c b -> c a b
            page.wait_for_function(f"document.querySelectorAll('{cards}')[0].dataset.jobId === '{c}'")
            assert order() == [c, a, b]
            stored = sorted((client.get(f"/api/jobs/{i}").json() for i in (a, b, c)), key=lambda j: j["position"])
            assert [j["id"] for j in stored] == [c, a, b]
            screenshot(page, f"presets-queue-{lang}.png")

            assert page.text_content("[data-testid=jobs-cancel-queued]") == words["cancel_all"]
            page.click("[data-testid=jobs-cancel-queued]")
            page.wait_for_function(f"document.querySelectorAll('{cards}').length === 0")
            assert all(client.get(f"/api/jobs/{i}").json()["status"] == "cancelled" for i in (a, b, c))
            assert client.get(f"/api/jobs/{slow}").json()["status"] == "running"
            client.post(f"/api/jobs/{slow}/cancel")
        assert page.js_errors == []
