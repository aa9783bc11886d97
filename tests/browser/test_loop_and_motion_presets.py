"""The loop switch and the motion presets in the real page (Debian's Chromium through Playwright,
the real server, the morph engine), in Korean and English: the switch adds the wrap pair's prompt
box and sends `loop`; a preset puts its phrase, in the page's language, into that pair's prompt, and
the job stores it as the prompt; the storyboard names the loop seam."""

from __future__ import annotations

import pytest

from tests.helpers.browser import REQUIREMENTS, offline_page, open_fresh_studio, screenshot, upload_files
from tests.helpers.images import save, scene
from tests.helpers.jobs import wait_for

pytestmark = REQUIREMENTS
SERVER_ENV = {"STUDIO_DEFAULT_ENGINE": "morph"}

ZOOM_IN = {"ko": "카메라가 천천히 줌 인", "en": "the camera slowly zooms in"}
HOLD = {"ko": "카메라 고정, 피사체만 자연스럽게 움직임", "en": "static camera, only the subject moves naturally"}
WORDS = {
    "ko": {"loop": "반복 재생(루프)", "wrap": "(마지막 → 처음)", "zoom": "줌 인", "seam": "반복 이음새"},
    "en": {"loop": "Loop", "wrap": "(last → first)", "zoom": "zoom in", "seam": "Loop seam"},
}


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_loop_switch_and_zoom_in_preset_reach_the_job(browser, server, client, tmp_path, lang):
    files = [save(scene(96, 72, shift=10 * i, hue=60 * i), tmp_path / f"{lang}{i}.png") for i in range(3)]
    page = open_fresh_studio(offline_page(browser, server.url), server.url, lang)
    upload_files(page, files)
    words = WORDS[lang]
    assert page.locator("[data-testid=pair]").count() == 2
    switch = page.locator("[data-testid=loop-switch]")
    assert words["loop"] in page.inner_text("label:has([data-testid=loop-switch])")
    switch.check()
    # The wrap pair (image 3 → image 1) gets its own prompt box, after the last image.
    page.wait_for_selector("[data-testid=pair][data-wrap=true]")
    assert page.locator("[data-testid=pair]").count() == 3
    assert words["wrap"] in page.inner_text("[data-testid=pair][data-wrap=true]")

    first = page.locator("[data-testid=pair]").nth(0)
    zoom = first.locator("[data-testid=motion-presets] [data-preset=zoom_in]")
    assert zoom.inner_text() == words["zoom"]
    zoom.click()
    assert first.locator("[data-testid=pair-prompt]").input_value() == ZOOM_IN[lang]
    zoom.click()  # the same phrase is never added twice
    assert first.locator("[data-testid=pair-prompt]").input_value() == ZOOM_IN[lang]
    wrap = page.locator("[data-testid=pair][data-wrap=true]")
    # A phrase goes after the text already in the box, never over it.
    wrap.locator("[data-testid=pair-prompt]").fill("sunset.")
    wrap.locator("[data-preset=hold]").click()
    assert wrap.locator("[data-testid=pair-prompt]").input_value() == f"sunset, {HOLD[lang]}"
    screenshot(page, f"loop-motion-composer-{lang}.png")

    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
        page.click("[data-testid=submit]")
    body = answer.value.request.post_data_json
    job_id = answer.value.json()["id"]
    assert body["loop"] is True and len(body["images"]) == 3
    assert body["prompts"] == [ZOOM_IN[lang], None, f"sunset, {HOLD[lang]}"]
    page.wait_for_selector("[data-testid=job-card]", timeout=30_000)
    job = client.get(f"/api/jobs/{job_id}").json()
    # Stored as text, nothing hidden: the job's prompts are the boxes' texts.
    assert [p["original"] for p in job["prompts"]] == [ZOOM_IN[lang], "", f"sunset, {HOLD[lang]}"]
    assert job["params"]["loop"] is True and len(job["params"]["segments"]) == 3
    client.post(f"/api/jobs/{job_id}/cancel")  # its video is not the point here (2 CPU cores)
    wait_for(client, job_id)


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_storyboard_names_the_loop_seam(browser, server, client, tmp_path, lang):
    files = [
        ("files", (f"s{i}.png", (tmp_path / f"s{i}.png").read_bytes(), "image/png"))
        for i in range(2)
        if save(scene(96, 72, shift=12 * i, hue=80 * i), tmp_path / f"s{i}.png")
    ]
    ids = [u["id"] for u in client.post("/api/uploads", files=files).json()["uploads"]]
    created = client.post(
        "/api/jobs",
        json={"images": ids, "loop": True, "engine": "morph", "settings": {"seconds": 1.2, "resolution": 64}},
    )
    job = wait_for(client, created.json()["id"])
    assert job["status"] == "completed", job
    page = open_fresh_studio(offline_page(browser, server.url), server.url, lang)
    page.wait_for_selector("[data-testid=storyboard] [data-testid=seam][data-wrap=true]", timeout=30_000)
    seam = page.locator("[data-testid=seam][data-wrap=true]").first.inner_text()
    assert seam.startswith(WORDS[lang]["seam"]) and any(ch.isdigit() for ch in seam)
    assert page.locator("[data-testid=transition]").count() >= 2
    screenshot(page, f"loop-storyboard-{lang}.png")
    assert not page.js_errors
