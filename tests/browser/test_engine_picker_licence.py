"""The engine picker shows each engine's licence as /api/health gives it, and FramePack's territory
note in full, in Korean and in English: the real server on loopback and the real page in Chromium."""

from __future__ import annotations

import pytest

from tests.helpers.browser import REQUIREMENTS, offline_page, open_fresh_studio, screenshot

pytestmark = REQUIREMENTS

SERVER_ENV = {"STUDIO_DEFAULT_ENGINE": "morph"}  # the folder's `server`: FramePack not installed here

SAID = {
    "en": (
        "Tencent Hunyuan Community License",
        ["European Union", "United Kingdom", "South Korea", "not legal advice"],
    ),
    "ko": ("텐센트 훈위안 커뮤니티 라이선스", ["유럽연합", "영국", "대한민국", "법률 자문이 아닙니다"]),
}


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_picker_shows_framepack_s_territory_note(browser, server, lang):
    page = offline_page(browser, server.url)
    open_fresh_studio(page, server.url, lang)
    name, places = SAID[lang]
    note = page.wait_for_selector("[data-testid=engine-licence-note-framepack]", state="visible", timeout=20_000)
    # The catalogue arrives after the page: wait for the sentence, not only for its element.
    page.wait_for_function(
        "(word) => document.querySelector('[data-testid=engine-licence-note-framepack]').innerText.includes(word)",
        arg=places[-1],
        timeout=20_000,
    )
    text = note.inner_text()
    for place in places:
        assert place in text, (lang, place, text)
    line = page.inner_text("[data-testid=engine-licence-framepack]")
    assert name in line, line
    link = page.get_attribute("[data-testid=engine-licence-framepack] a", "href")
    assert link == "https://huggingface.co/tencent/HunyuanVideo/blob/main/LICENSE"
    # Wan's line names the configured model and links its page (Apache-2.0, no territory note).
    wan = page.inner_text("[data-testid=engine-licence-wan]")
    assert "(Wan 2.1 FLF2V 14B)" in wan and "Apache-2.0" in wan, wan
    assert "Wan 2.2 I2V A14B" in wan, wan  # the note covers both models the engine can run
    link = page.get_attribute("[data-testid=engine-licence-wan] a", "href")
    assert link == "https://huggingface.co/Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers"
    morph = page.inner_text("[data-testid=engine-licence-morph]")
    assert ("the studio's own code" if lang == "en" else "스튜디오 자체 코드") in morph, morph
    assert page.query_selector("[data-testid=engine-licence-morph] a") is None  # no licence text to link
    screenshot(page, f"engine-picker-licence-{lang}.png")
    assert page.js_errors == []
    page.close()
