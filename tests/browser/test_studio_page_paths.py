"""The studio page's image-analysis suggestions and the page paths test_ui_browser.py does not walk:
login gate, cancel, failed job, refused submit, dropped files, remove/dismiss, draft clean-up and
prompts that follow their pair. Real server on loopback, real page in Debian's headless Chromium
(Playwright with executable_path), a tiny random OpenCLIP of the real architecture loaded through
the studio's own `local-dir:` path; every request that is not to 127.0.0.1 is blocked.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from backend.jobs.params import sections_for
from tests.helpers.browser import REQUIREMENTS, open_fresh_studio
from tests.helpers.browser import card_ids as _ids
from tests.helpers.browser import offline_page as _page
from tests.helpers.browser import screenshot as _screenshot
from tests.helpers.browser import upload_files as _upload
from tests.helpers.images import save, scene
from tests.helpers.openclip import tiny_clip_dir
from tests.helpers.server import StudioServer

pytestmark = REQUIREMENTS


@pytest.fixture(scope="module")
def clip_server(tmp_path_factory):
    """Morph engine and a real (tiny, random) OpenCLIP: analysis is available."""
    tmp = tmp_path_factory.mktemp("ui-clip")
    clip = tiny_clip_dir(tmp)
    with StudioServer(tmp, {"STUDIO_DEFAULT_ENGINE": "morph", "STUDIO_OPENCLIP_MODEL": f"local-dir:{clip}"}) as server:
        yield server


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    """No OpenCLIP weights (the hub is offline) and no FramePack weights; at most 5 s per transition
    and 2 images per job."""
    tmp = tmp_path_factory.mktemp("ui-bare")
    with StudioServer(
        tmp,
        {
            "STUDIO_MAX_SECONDS_PER_TRANSITION": "5",
            "STUDIO_MAX_IMAGES_PER_JOB": "2",
            # The post-processing weights' host: a closed port (fails at once).
            "STUDIO_WEIGHTS_MIRROR": "http://127.0.0.1:9",
        },
    ) as server:
        yield server


def _open(context, server, phone: bool = False):
    """A fresh studio page with an empty composer (drafts are per origin, tests share one)."""
    return open_fresh_studio(_page(context, server.url), server.url)


def _images(tmp_path: Path, count: int, size=(160, 120)) -> list[Path]:
    return [save(scene(*size, shift=15 * i, hue=80 * i), tmp_path / f"img{i}.png") for i in range(count)]


def _analysis(server, ids: list[str]) -> dict:
    answer = httpx.post(server.url + "/api/analyze", json={"images": ids}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _wait_analysis(page, ids: list[str], state: str) -> None:
    """Until the panel shows the answer for exactly this order."""
    page.wait_for_function(
        """([ids, state]) => {
          const panel = document.querySelector('[data-testid=suggestions]');
          const cards = [...document.querySelectorAll('[data-testid=image-card]')].map(e => e.dataset.uploadId);
          return panel && panel.dataset.state === state && cards.join(',') === ids.join(',');
        }""",
        arg=[ids, state],
        timeout=30_000,
    )


def _shown_pairs(page) -> list[tuple[float, int]]:
    return [
        (float(s), int(k))
        for s, k in page.eval_on_selector_all(
            "[data-testid=suggestion-pair]", "els => els.map(e => [e.dataset.seconds, e.dataset.strength])"
        )
    ]


def test_suggestions_per_transition_reach_the_job(browser, clip_server, tmp_path):
    server = clip_server
    page = _open(browser, server)
    ids = _upload(page, _images(tmp_path, 3))
    _wait_analysis(page, ids, "available")
    truth = _analysis(server, ids)
    assert truth["available"] is True
    suggested = [(p["seconds"], p["strength"]) for p in truth["suggestions"]["pairs"]]
    assert _shown_pairs(page) == suggested
    assert page.inner_text("[data-testid=suggestions-model]") == truth["model"]
    reasons = page.eval_on_selector_all("[data-testid=suggestion-reason]", "els => els.map(e => e.textContent)")
    assert reasons == [r["en"] for r in truth["suggestions"]["reasons"]]
    assert page.inner_text("[data-testid=suggested-frame]").startswith(
        f"Resolution {truth['suggestions']['resolution']}px"
    )
    # What the model saw, on each thumbnail.
    assert page.locator("[data-testid=image-tags]").count() == 3
    scene_label = {"cityscape": "city"}.get(truth["images"][0]["tags"]["scene"], truth["images"][0]["tags"]["scene"])
    assert scene_label in page.locator("[data-testid=image-tags]").nth(0).inner_text()
    # A blank pair says which prompt it will get.
    placeholders = page.eval_on_selector_all("[data-testid=pair-prompt]", "els => els.map(e => e.placeholder)")
    assert placeholders == [f"Empty: {p}" for p in truth["default_prompts"]]

    # Use them: per-transition length/strength are left to the server, resolution is set.
    page.click("[data-testid=apply-suggestions]")
    seconds = [s for s, _ in suggested]
    strengths = [k for _, k in suggested]
    assert page.inner_text("[data-testid=seconds-value]").startswith("Auto")
    assert page.inner_text("[data-testid=strength-value]").startswith("Auto")
    assert page.input_value("[data-testid=resolution]") == str(truth["suggestions"]["resolution"])
    assert f"{round(sum(seconds), 1):.1f}" in page.inner_text("[data-testid=total-length]")
    page.wait_for_selector("[data-testid=suggestions-active]")
    page.click("[data-testid=advanced] summary")
    page.wait_for_selector("[data-testid=advanced-auto]")
    # The advanced panel shows the per-transition strengths the server resolves from the analysis.
    page.wait_for_function(
        "ks => { const el = document.querySelector('[data-testid=advanced-params]');"
        " return !!el && ks.every(k => el.innerText.includes('\"strength\":' + k)); }",
        arg=strengths,
    )
    page.click("[data-testid=post-mode] label:has-text('Off')")
    page.click("[data-testid=engine] label:has-text('morph')")
    _screenshot(page, "studio-suggestions.png")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _screenshot(page, "studio-suggestions-phone.png")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Korean shows the Korean reasons; the choice survives a reload with the draft.
    page.click("[data-testid=lang-toggle]")
    reasons_ko = page.eval_on_selector_all("[data-testid=suggestion-reason]", "els => els.map(e => e.textContent)")
    assert reasons_ko == [r["ko"] for r in truth["suggestions"]["reasons"]]
    assert page.inner_text("[data-testid=seconds-value]").startswith("자동")
    page.click("[data-testid=lang-toggle]")
    page.reload()
    _wait_analysis(page, ids, "available")
    assert page.inner_text("[data-testid=seconds-value]").startswith("Auto")

    with page.expect_request(lambda r: r.url.endswith("/api/jobs") and r.method == "POST") as sent:
        page.click("[data-testid=submit]")
    body = sent.value.post_data_json
    assert body["settings"]["seconds"] is None and body["settings"]["strength"] is None
    assert body["settings"]["resolution"] == truth["suggestions"]["resolution"]
    page.wait_for_selector("[data-testid=job-card]")
    job_id = page.get_attribute("[data-testid=job-card]", "data-job-id")
    job = httpx.get(f"{server.url}/api/jobs/{job_id}").json()
    segments = job["params"]["segments"]
    assert [seg["strength"] for seg in segments] == strengths
    assert [seg["sections"] for seg in segments] == [sections_for(s) for s in seconds]

    # A slider moved by hand is the user's value again, for every transition.
    page.focus("[data-testid=strength]")
    page.keyboard.press("Home")
    assert page.inner_text("[data-testid=strength-value]") == "0"
    assert page.inner_text("[data-testid=seconds-value]").startswith("Auto")
    page.click("[data-testid=own-values]")
    assert not page.inner_text("[data-testid=seconds-value]").startswith("Auto")
    assert page.locator("[data-testid=suggestions-active]").count() == 0

    # A new order is analysed again and the panel follows it.
    page.locator("[data-testid=image-card]").nth(0).locator("[data-testid=move-right]").click()
    reordered = [ids[1], ids[0], ids[2]]
    _wait_analysis(page, reordered, "available")
    again = _analysis(server, reordered)
    assert _shown_pairs(page) == [(p["seconds"], p["strength"]) for p in again["suggestions"]["pairs"]]
    page.wait_for_selector(f"[data-testid=job-card][data-job-id='{job_id}'][data-status=completed]", timeout=60_000)
    assert page.js_errors == []
    page.close()


def test_without_a_model_the_panel_says_why_and_keeps_size_suggestions(browser, bare_server, tmp_path):
    page = _open(browser, bare_server)
    ids = _upload(page, _images(tmp_path, 2))
    _wait_analysis(page, ids, "limited")
    notice = page.inner_text("[data-testid=suggestions-unavailable]")
    assert "Image analysis is unavailable" in notice and "image sizes" in notice
    assert page.locator("[data-testid=suggestion-pair]").count() == 0
    assert page.locator("[data-testid=image-tags]").count() == 0
    page.click("[data-testid=apply-suggestions]")
    assert page.input_value("[data-testid=resolution]") == "320"  # 160x120 images: not upscaled to 640
    # No per-pair suggestion to follow: the server's default length (GET /api/meta), not a copy.
    seconds = httpx.get(bare_server.url + "/api/meta").json()["defaults"]["settings"]["seconds"]
    assert page.inner_text("[data-testid=seconds-value]") == f"{seconds:.1f} s"
    assert page.locator("[data-testid=own-values]").count() == 0
    assert page.js_errors == []
    page.close()


def test_refused_submit_and_failed_job_show_the_servers_words(browser, bare_server, tmp_path):
    page = _open(browser, bare_server)
    ids = _upload(page, _images(tmp_path, 3))
    # The length slider stops at the server's limit (5 s here), read from /api/meta.
    assert page.get_attribute("[data-testid=seconds]", "max") == "5"
    # 3 images on a server that allows 2: the 4xx detail is shown, nothing is lost.
    page.click("[data-testid=advanced] summary")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=advanced-error]')?.textContent.includes('at most 2 images')"
    )
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=submit-error]")
    assert "at most 2 images per job" in page.inner_text("[data-testid=submit-error]")
    assert _ids(page) == ids and page.locator("[data-testid=job-card]").count() == 0
    page.locator("[data-testid=remove-image]").nth(2).click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=image-card]').length === 2")

    # FramePack without its weights cannot be chosen; the page says why, and the server refuses it
    # at submit with the same words.
    page.click("[data-testid=engine] label:has-text('FramePack')", force=True)  # disabled: no effect
    assert page.is_checked("[data-testid=engine] input[value=morph]")
    assert "FramePack is not installed" in page.inner_text("[data-testid=engine-notice]")
    refused = httpx.post(f"{bare_server.url}/api/jobs", json={"images": ids[:2], "engine": "framepack"})
    assert refused.status_code == 409 and "FramePack is not installed" in refused.json()["detail"]

    # A stage whose weights cannot be had: the job fails and its card says why.
    page.focus("[data-testid=seconds]")
    page.keyboard.press("Home")
    page.select_option("[data-testid=resolution]", "256")
    page.click("[data-testid=post-mode] label:has-text('Manual')")
    page.check("[data-testid=post-face]")
    page.click("[data-testid=submit]")
    page.wait_for_selector("[data-testid=submit-error]", state="detached")
    page.wait_for_selector("[data-testid=job-card][data-status=failed]", timeout=60_000)
    error = page.inner_text("[data-testid=job-error]")
    job = httpx.get(f"{bare_server.url}/api/jobs").json()["jobs"][0]
    assert job["status"] == "failed" and error == job["error"] and error
    assert "detection_Resnet50_Final.pth" in error  # the file, and where to put it
    assert page.inner_text("[data-testid=job-status]") == "Failed"
    page.click("[data-testid=job-delete]")
    page.wait_for_selector("[data-testid=job-card]", state="detached")
    assert page.js_errors == []
    page.close()


def test_cancel_a_queued_and_a_running_job(browser, clip_server, tmp_path):
    page = _open(browser, clip_server)
    _upload(page, _images(tmp_path, 2, size=(640, 480)))
    page.click("[data-testid=engine] label:has-text('morph')")
    page.click("[data-testid=post-mode] label:has-text('Off')")
    page.select_option("[data-testid=resolution]", "768")
    page.focus("[data-testid=seconds]")
    page.keyboard.press("End")  # 20 s: long enough to be caught running
    before = len(httpx.get(f"{clip_server.url}/api/jobs").json()["jobs"])  # earlier tests' jobs
    cards = "n => document.querySelectorAll('[data-testid=job-card]').length === n"
    page.wait_for_function(cards, arg=before)
    card_ids = "els => els.map(e => e.dataset.jobId)"
    seen = set(page.eval_on_selector_all("[data-testid=job-card]", card_ids))
    page.click("[data-testid=submit]")
    page.wait_for_function(cards, arg=before + 1)
    # The list orders running and waiting jobs first, so the new card is found by its id, not its place.
    (first,) = set(page.eval_on_selector_all("[data-testid=job-card]", card_ids)) - seen
    page.click("[data-testid=submit]")
    page.wait_for_function(cards, arg=before + 2)
    (second,) = set(page.eval_on_selector_all("[data-testid=job-card]", card_ids)) - seen - {first}
    page.wait_for_selector(f"[data-job-id='{first}'][data-status=running]", timeout=30_000)
    queued = page.locator(f"[data-job-id='{second}']")
    assert queued.get_attribute("data-status") == "queued"
    queued.locator("[data-testid=job-cancel]").click()
    page.wait_for_selector(f"[data-job-id='{second}'][data-status=cancelled]", timeout=10_000)
    page.locator(f"[data-job-id='{first}'] [data-testid=job-cancel]").click()
    page.wait_for_selector(f"[data-job-id='{first}'][data-status=cancelled]", timeout=30_000)
    assert page.locator(f"[data-job-id='{first}'] [data-testid=job-status]").inner_text() == "Cancelled"
    assert httpx.get(f"{clip_server.url}/api/jobs/{first}").json()["status"] == "cancelled"
    assert page.js_errors == []
    page.close()


def test_dropped_files_remove_dismiss_and_prompts_follow_their_pair(browser, clip_server, tmp_path):
    page = _open(browser, clip_server)
    files = _images(tmp_path, 3)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    # Files dropped anywhere on the page (a real DataTransfer with real File objects).
    payload = [{"name": p.name, "bytes": list(p.read_bytes())} for p in [*files, bad]]
    page.evaluate(
        """(files) => {
      window.__dt = new DataTransfer();
      for (const f of files) window.__dt.items.add(new File([new Uint8Array(f.bytes)], f.name, {type: 'image/png'}));
      document.body.dispatchEvent(new DragEvent('dragenter', {dataTransfer: window.__dt, bubbles: true}));
    }""",
        payload,
    )
    page.wait_for_selector(".fixed.inset-0.border-dashed")  # the full-page "drop here" overlay
    page.evaluate(
        "() => document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: window.__dt, bubbles: true, cancelable: true}))"
    )
    page.wait_for_selector("[data-testid=rejected]")
    assert "notes.png" in page.inner_text("[data-testid=rejected]")
    assert page.inner_text("[data-testid=rejected-reason]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=image-card]')].filter(e => e.dataset.uploadId).length === 3"
    )
    a, b, c = _ids(page)
    assert page.eval_on_selector_all("[data-testid=image-card]", "els => els.map(e => e.dataset.filename)") == [
        p.name for p in files
    ]
    assert page.locator(".fixed.inset-0.border-dashed").count() == 0  # the overlay went with the drop
    page.click("[data-testid=rejected] button")
    assert page.locator("[data-testid=rejected]").count() == 0

    # A pair's prompt belongs to the pair: after a reorder it stays with a→b, not with position 1.
    prompts = page.locator("[data-testid=pair-prompt]")
    prompts.nth(0).fill("a to b")
    prompts.nth(1).fill("b to c")
    page.locator("[data-testid=image-card]").nth(2).locator("[data-testid=move-left]").click()  # a c b
    assert _ids(page) == [a, c, b]
    assert [prompts.nth(i).input_value() for i in range(2)] == ["", ""]
    page.locator("[data-testid=image-card]").nth(1).locator("[data-testid=move-right]").click()  # a b c
    assert [prompts.nth(i).input_value() for i in range(2)] == ["a to b", "b to c"]
    # Remove b: the pairs are now a→c only; b's prompts are not sent for it.
    page.locator("[data-testid=image-card]").nth(1).locator("[data-testid=remove-image]").click()
    assert _ids(page) == [a, c]
    assert prompts.count() == 1 and prompts.nth(0).input_value() == ""
    page.click("[data-testid=post-mode] label:has-text('Off')")
    with page.expect_request(lambda r: r.url.endswith("/api/jobs") and r.method == "POST") as sent:
        page.click("[data-testid=submit]")
    assert sent.value.post_data_json["images"] == [a, c]
    assert sent.value.post_data_json["prompts"] == [None]
    page.wait_for_selector("[data-testid=job-card]")
    assert page.js_errors == []
    page.close()


def test_a_restored_draft_drops_uploads_the_server_no_longer_has(browser, clip_server, tmp_path):
    page = _open(browser, clip_server)
    a, b = _upload(page, _images(tmp_path, 2))
    draft = page.evaluate("JSON.parse(localStorage.getItem('studio.draft'))")
    gone = dict(draft["uploads"][0], id="0123456789abcdef01234567", filename="gone.png")
    draft["uploads"].insert(1, gone)
    page.evaluate("d => localStorage.setItem('studio.draft', JSON.stringify(d))", draft)
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=image-card]').length === 2")
    assert _ids(page) == [a, b]
    assert page.js_errors == []
    page.close()


def test_login_gate_asks_for_the_token_then_the_page_works(browser, tmp_path):
    token = "correct-horse-battery"
    with StudioServer(tmp_path, {"STUDIO_TOKEN": token, "STUDIO_DEFAULT_ENGINE": "morph"}) as server:
        page = _page(browser, server.url)
        page.goto(server.url + "/")
        page.wait_for_selector("[data-testid=login-token]")
        assert page.locator("[data-testid=socket-status][data-state=open]").count() == 0
        page.fill("[data-testid=login-token]", "wrong")
        page.click("form:has([data-testid=login-token]) button")
        page.wait_for_selector("form [role=alert]")
        assert page.locator("[data-testid=login-token]").is_visible()
        page.fill("[data-testid=login-token]", token)
        page.click("form:has([data-testid=login-token]) button")
        page.wait_for_selector("[data-testid=login-token]", state="detached")
        # The cookie opens the socket on its next retry, and uploads (XHR) too.
        page.wait_for_selector("[data-testid=socket-status][data-state=open]", timeout=30_000)
        page.evaluate("localStorage.removeItem('studio.draft')")
        ids = _upload(page, _images(tmp_path, 2))
        assert all(ids)
        assert page.js_errors == []
        page.close()
