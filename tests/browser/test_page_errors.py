"""The page says a refusal in its own language from the error's code (the server's catalogue),
switches with the language toggle, and falls back to the server's words for a code it does not
know. Real server on loopback, the real page in Debian's headless Chromium."""

from __future__ import annotations

from pathlib import Path

from backend.contracts import messages
from tests.helpers.browser import REQUIREMENTS, offline_page, open_fresh_studio
from tests.helpers.images import save, scene

pytestmark = REQUIREMENTS


SERVER_ENV = {"STUDIO_DEFAULT_ENGINE": "morph", "STUDIO_MAX_IMAGES_PER_JOB": "2"}  # the folder's `server`


def _open(browser, server, lang: str):
    return open_fresh_studio(offline_page(browser, server.url), server.url, lang)


def test_refusals_are_shown_in_the_pages_language(browser, server, tmp_path: Path):
    page = _open(browser, server, "ko")
    files = [save(scene(160, 120, shift=15 * i, hue=80 * i), tmp_path / f"img{i}.png") for i in range(3)]
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    uploaded = (
        "(n) => [...document.querySelectorAll('[data-testid=image-card]')].filter(e => e.dataset.uploadId).length === n"
    )
    page.set_input_files("[data-testid=file-input]", [str(f) for f in files[:2]])
    page.wait_for_function(uploaded, arg=2, timeout=30_000)

    # No image-analysis model here (the hub is unreachable): the notice in Korean alone.
    page.wait_for_function(
        "(t) => document.querySelector('[data-testid=suggestions-unavailable]')?.textContent.includes(t)",
        arg=messages.render("analysis_unavailable", "ko"),
        timeout=60_000,
    )
    assert "Image analysis is unavailable" not in page.inner_text("[data-testid=suggestions-unavailable]")

    # A third image: more than this server analyses at once, said in Korean.
    page.set_input_files("[data-testid=file-input]", [str(files[2])])
    page.wait_for_function(uploaded, arg=3, timeout=30_000)
    page.wait_for_function(
        "(t) => document.querySelector('[data-testid=suggestions-error]')?.textContent === t",
        arg=messages.render("analyze_too_many_images", "ko", {"count": 3, "limit": 2}),
    )

    # Three images on a server that allows two: the route's refusal, in Korean only.
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=submit-error]")
    korean = messages.render("too_many_images", "ko", {"limit": 2, "count": 3})
    assert page.inner_text("[data-testid=submit-error]") == korean
    # The toggle re-renders the same error in English.
    page.click("[data-testid=lang-toggle]")
    page.wait_for_function(
        "(t) => document.querySelector('[data-testid=submit-error]').textContent === t",
        arg=messages.render("too_many_images", "en", {"limit": 2, "count": 3}),
    )

    # An upload the server refuses: its reason in the page's language (English now).
    page.set_input_files("[data-testid=file-input]", [str(bad)])
    reason = page.wait_for_selector("[data-testid=rejected-reason]").inner_text()
    assert reason == "'notes.png': not a PNG, JPEG or WebP image"
    page.click("[data-testid=lang-toggle]")
    page.wait_for_function(
        "(t) => document.querySelector('[data-testid=rejected-reason]').textContent === t",
        arg="PNG, JPEG, WebP 이미지가 아닙니다",
    )

    # A code this page's catalogue lacks (a newer server): the server's own words.
    shown = page.evaluate("""async () => {
      const m = await import('/js/lib/i18n.js');
      return [m.errorText('ko', {code: 'made_up_code', params: {}, message: 'server words / 서버의 말'}),
              m.errorText('ko', {code: 'job_not_found', params: {job_id: 'j1'}, message: 'x'}),
              m.messageText('en', 'engine_not_ready', {reason: {en: 'weights missing', ko: '가중치 없음'}}),
              m.messageText('ko', 'engine_not_ready',
                            {reason: {code: 'engine_unavailable', params: {engine: 'framepack'}}})];
    }""")
    assert shown == [
        "server words / 서버의 말",
        "작업 j1을(를) 찾을 수 없습니다",
        "weights missing",
        "framepack 엔진을 사용할 수 없습니다",
    ]
    assert page.js_errors == []
    page.close()
