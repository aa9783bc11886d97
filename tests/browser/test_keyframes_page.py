"""Keyframes inside a transition in the real page (Debian's Chromium through Playwright, the real
server, the tiny FramePack of the real architecture on the CPU), in Korean and English: a keyframe
image added on a transition, where it lands on the transition's timeline (the server's placement),
the page's line on how it differs from adding the image to the storyboard, morph's refusal in the
page's language, and (English) a job made with it whose re-roll keeps it and whose duplicate brings
it back to the composer."""

from __future__ import annotations

import pytest

from backend.contracts import messages
from tests.helpers.browser import REQUIREMENTS, offline_page, open_fresh_studio, screenshot, upload_files
from tests.helpers.images import save, scene
from tests.helpers.jobs import wait_for

pytestmark = REQUIREMENTS
WORDS = {
    "ko": {"lands": "1.2초에 놓임 (구간 경계 1)", "help": "스토리보드에 넣으면 전환이 두 개가", "morph": "모프"},
    "en": {"lands": "lands at 1.2 s (section boundary 1)", "help": "two transitions joined at it", "morph": "Morph"},
}


@pytest.fixture(scope="module")
def server_env(tiny_framepack_dir) -> dict[str, str]:
    return {"FRAMEPACK_DIR": str(tiny_framepack_dir)}


def _set_range(page, selector: str, value) -> None:
    page.eval_on_selector(
        selector,
        "(el, v) => { const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
        " set.call(el, String(v)); el.dispatchEvent(new Event('input', { bubbles: true })); }",
        value,
    )


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_a_keyframe_lands_on_the_timeline_and_a_reroll_keeps_it(browser, server, client, tmp_path, lang):
    files = [save(scene(96, 72, shift=12 * i, hue=70 * i), tmp_path / f"{lang}{i}.png") for i in range(3)]
    page = open_fresh_studio(offline_page(browser, server.url), server.url, lang)
    upload_files(page, files[:2])
    words = WORDS[lang]
    page.click("[data-testid=engine] label:has-text('FramePack')")
    _set_range(page, "[data-testid=seconds]", 2.4)

    editor = "[data-testid=keyframes][data-transition='0']"
    # The help is folded (one line a pair); opened, it says how a keyframe differs from an image.
    assert not page.is_visible(f"{editor} [data-testid=keyframe-help]")
    page.click(f"{editor} [data-testid=keyframe-help-box] summary")
    assert words["help"] in page.inner_text(f"{editor} [data-testid=keyframe-help]")
    page.set_input_files(f"{editor} [data-testid=keyframe-file]", str(files[2]))
    # The default time is the middle (1.2 s of 2.4 s): it lands on the boundary of sections 1 and 2.
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent === text",
        arg=[f"{editor} [data-testid=keyframe-lands]", words["lands"]],
        timeout=30_000,
    )
    marker = page.wait_for_selector(f"{editor} [data-testid=keyframe-marker]")
    assert marker.get_attribute("data-lands") == "1.2"
    # On the timeline at its share of the transition: 73 frames, 2.433 s at 30 fps (as the plan rounds it).
    left = float(marker.get_attribute("style").replace(" ", "").removeprefix("left:").removesuffix("%;"))
    assert left == pytest.approx(100 * 1.2 / 2.433, abs=1e-3)

    # A later time snaps to the next boundary; 2.3 s lands on the last image and is refused.
    page.fill(f"{editor} [data-testid=keyframe-at]", "2.3")
    refused = page.wait_for_selector(f"{editor} [data-testid=keyframe-error]")
    assert refused.inner_text() == messages.render(
        "keyframe_outside",
        lang,
        {"n": 1, "at": "2.3", "lands": "2.4", "engine": "framepack", "seconds": "2.433", "first": "1.2", "last": "1.2"},
    )
    page.fill(f"{editor} [data-testid=keyframe-at]", "1.3")
    page.wait_for_selector(f"{editor} [data-testid=keyframe-error]", state="detached")
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent === text",
        arg=[f"{editor} [data-testid=keyframe-lands]", words["lands"]],
    )
    screenshot(page, f"keyframes-{lang}.png")

    # Morph cannot pass through a keyframe: the page says so in its language.
    page.click(f"[data-testid=engine] label:has-text('{words['morph']}')")
    error = page.wait_for_selector(f"{editor} [data-testid=keyframe-error]")
    assert error.inner_text() == messages.render("engine_no_keyframes", lang, {"engine": "morph", "n": 1})
    page.click("[data-testid=engine] label:has-text('FramePack')")
    page.wait_for_selector(f"{editor} [data-testid=keyframe-error]", state="detached")
    if lang == "ko":
        assert not page.js_errors
        return

    # English: the job goes with its keyframe; the take card shows it; a re-roll keeps it.
    page.fill("[data-testid=seed]", "7")
    page.select_option("[data-testid=resolution]", "256")
    _set_range(page, "[data-testid=quality]", 0)
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as answer:
        page.click("[data-testid=submit]")
    assert answer.value.status == 201, answer.value.text()
    sent = answer.value.request.post_data_json["keyframes"]
    assert len(sent) == 1 and sent[0]["transition"] == 0 and sent[0]["at"] == 1.3
    job_id = answer.value.json()["id"]
    done = wait_for(client, job_id, timeout=600)
    assert done["status"] == "completed", done
    card = f"[data-testid=job-card][data-job-id='{job_id}']"
    page.wait_for_selector(f"{card} [data-testid=take-keyframes]")
    assert page.inner_text(f"{card} [data-testid=take-keyframes]") == "keyframes: 1.2s"

    page.click(f"{card} [data-testid=take-reroll]")
    page.fill(f"{card} [data-testid=reroll-seed]", "9")
    with page.expect_response(lambda r: r.url.endswith("/transitions/0/takes") and r.request.method == "POST") as rr:
        page.click(f"{card} [data-testid=reroll-submit]")
    assert rr.value.status == 202 and rr.value.request.post_data_json == {"seed": 9}
    done = wait_for(client, job_id, timeout=600)
    assert done["status"] == "completed", done
    takes = done["transitions"][0]["takes"]
    assert [[(k["point"], k["lands_at"]) for k in t["keyframes"]] for t in takes] == [[(1, 1.2)], [(1, 1.2)]]
    page.wait_for_function(
        "sel => document.querySelectorAll(sel).length === 2", arg=f"{card} [data-testid=take-keyframes]"
    )
    screenshot(page, "keyframes-job-en.png")

    # Duplicate to composer: the storyboard comes back with its keyframe where it landed.
    page.click(f"{editor} [data-testid=keyframe-remove]")
    page.wait_for_selector(f"{editor} [data-testid=keyframe]", state="detached")
    page.click(f"{card} [data-testid=job-duplicate]")
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.textContent === text",
        arg=[f"{editor} [data-testid=keyframe-lands]", words["lands"]],
        timeout=30_000,
    )
    assert page.input_value(f"{editor} [data-testid=keyframe-at]") == "1.3"
    assert not page.js_errors
