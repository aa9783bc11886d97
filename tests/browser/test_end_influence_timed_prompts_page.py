"""The end-frame influence slider and timed prompts in the real page (Debian's Chromium through
Playwright, the real server, the morph engine), in Korean and English: the help line under the
prompt, the slider reaching the job, each timed prompt's section in the params panel, and a
malformed form answered there with the catalogue's sentence in the page's language."""

from __future__ import annotations

import pytest

from backend.contracts import messages
from backend.contracts.timed_prompts import EXAMPLE
from tests.helpers.browser import REQUIREMENTS, offline_page, open_fresh_studio, upload_files
from tests.helpers.images import save, scene
from tests.helpers.jobs import wait_for

pytestmark = REQUIREMENTS
SERVER_ENV = {"STUDIO_DEFAULT_ENGINE": "morph"}
WORDS = {
    "ko": {"help": "시간별 프롬프트", "section": "구간 2"},
    "en": {"help": "Timed prompts", "section": "section 2"},
}


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_influence_slider_and_timed_prompt_sections(browser, server, client, tmp_path, lang):
    files = [save(scene(96, 72, shift=10 * i, hue=60 * i), tmp_path / f"{lang}{i}.png") for i in range(2)]
    page = open_fresh_studio(offline_page(browser, server.url), server.url, lang)
    upload_files(page, files)
    words = WORDS[lang]
    assert words["help"] in page.inner_text("[data-testid=timed-prompt-help]")

    page.click("[data-testid=advanced] summary")
    page.eval_on_selector(
        "[data-testid=end-influence]",
        "el => { el.value = '0.5'; el.dispatchEvent(new Event('input', { bubbles: true })); }",
    )
    assert page.inner_text("[data-testid=end-influence-value]") == "0.50"
    page.fill("[data-testid=global-prompt]", "[0s: a cat] [1.2s: the cat jumps]")
    page.wait_for_selector("[data-testid=prompt-sections] li >> nth=1")
    assert words["section"] in page.inner_text("[data-testid=prompt-sections]")

    page.fill("[data-testid=global-prompt]", "[0s a cat]")
    error = page.wait_for_selector("[data-testid=advanced-error]")
    expected = messages.render("timed_prompt_malformed", lang, {"n": 1, "expected": EXAMPLE})
    assert error.inner_text() == expected

    page.fill("[data-testid=global-prompt]", "[0s: a cat] [1.2s: the cat jumps]")
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
        page.click("[data-testid=submit]")
    body = answer.value.request.post_data_json
    assert body["settings"]["end_influence"] == 0.5
    job = client.get(f"/api/jobs/{answer.value.json()['id']}").json()
    segment = job["params"]["segments"][0]
    assert segment["end_influence"] == 0.5 and [p["section"] for p in segment["prompt_sections"]] == [0, 1]
    client.post(f"/api/jobs/{job['id']}/cancel")
    wait_for(client, job["id"])
