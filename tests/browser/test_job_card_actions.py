"""The job card's ways back into the composer, in the real page (Debian's Chromium through
Playwright, a real studio on loopback, the morph engine), in Korean and English: "Use these
settings" on a completed job, "Duplicate to composer" (its images too), "Edit settings" of a job
waiting behind a slow one (saved to the job, which keeps its place), and "Settings from a video"
with the studio's own final.mp4, a plain video and a PNG (the catalogue's sentence)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from backend.utils.video_io import write_video
from tests.helpers.browser import REQUIREMENTS, card_ids, offline_page, open_fresh_studio, screenshot, upload_files
from tests.helpers.images import save, scene
from tests.helpers.jobs import wait_for
from tests.helpers.uploads import upload, upload_scenes

pytestmark = REQUIREMENTS
SERVER_ENV = {"STUDIO_DEFAULT_ENGINE": "morph"}

# Every value differs from the composer's defaults (2.4 s, 70, 50, the server's resolution, no
# seed, post-processing off), so a control showing it was set by the action under test.
SLIDERS = {"seconds": 1.5, "quality": 42, "strength": 63, "resolution": 256, "seed": 1234}
WORDS = {
    "en": {
        "use": "Use these settings",
        "duplicate": "Duplicate to composer",
        "edit": "Edit settings",
        "save": "Save to the queued job",
        "queue1": "Queue #1",
        "queue2": "Queue #2",
        "from_video": "Settings from a video",
        "from_video_done": "Settings and prompts taken from the video",
        "not_readable": "could not be read as a video",
        "no_settings": "carries no settings from this studio",
    },
    "ko": {
        "use": "이 설정 사용",
        "duplicate": "작성기로 복제",
        "edit": "설정 수정",
        "save": "대기 작업에 저장",
        "queue1": "대기 1번",
        "queue2": "대기 2번",
        "from_video": "영상에서 설정 가져오기",
        "from_video_done": "영상의 설정과 프롬프트를 가져왔습니다",
        "not_readable": "영상으로 읽을 수 없습니다",
        "no_settings": "이 스튜디오의 설정이 없습니다",
    },
}


@pytest.fixture(scope="module")
def done_job(server) -> dict:
    """A completed morph job with the SLIDERS, Auto post-processing, a prompt and one pair's own."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        ids = upload_scenes(client, 3, shift=10, hue=40, name="done{i}")
        body = {
            "images": ids,
            "engine": "morph",
            "prompt": "slow dolly in",
            "prompts": ["first pair", None],
            "settings": SLIDERS,
            "postprocess": {"mode": "auto"},
        }
        job = wait_for(client, client.post("/api/jobs", json=body).json()["id"], timeout=240)
    assert job["status"] == "completed", job
    return job


@pytest.fixture(scope="module")
def manual_job(server) -> dict:
    """A finished job with manual post-processing (its models are not on this machine: it fails,
    and a failed job is one a person duplicates to try again)."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        ids = upload(client, [scene(80, 64, shift=7 * i, hue=50 * i) for i in range(3)], name="dup{i}")
        body = {
            "images": ids,
            "engine": "morph",
            "prompts": ["pan left", "pan right"],
            "settings": {"seconds": 1.0, "quality": 25, "strength": 90, "resolution": 256, "seed": 77},
            "postprocess": {"mode": "manual", "face_restore": True, "upscale": 2, "interpolate": 4},
        }
        job = wait_for(client, client.post("/api/jobs", json=body).json()["id"], timeout=240)
    assert job["status"] in ("completed", "failed"), job
    return job


def composer(page) -> dict:
    """What the composer's controls show."""
    checked = lambda group: page.eval_on_selector(  # noqa: E731
        f"[data-testid={group}]", "el => el.querySelector('input:checked')?.value ?? null"
    )
    return {
        "seconds": page.input_value("[data-testid=seconds]"),
        "quality": page.input_value("[data-testid=quality]"),
        "strength": page.input_value("[data-testid=strength]"),
        "resolution": page.input_value("[data-testid=resolution]"),
        "seed": page.input_value("[data-testid=seed]"),
        "engine": checked("engine"),
        "post": checked("post-mode"),
        "prompt": page.input_value("[data-testid=global-prompt]"),
        "pairs": [p.input_value() for p in page.locator("[data-testid=pair-prompt]").all()],
    }


def sliders_shown(settings: dict) -> dict:
    return {
        "seconds": f"{settings['seconds']:g}",
        "quality": str(settings["quality"]),
        "strength": str(settings["strength"]),
        "resolution": str(settings["resolution"]),
        "seed": str(settings["seed"]),
    }


def page_images(page, tmp_path, lang, n=3) -> list[str]:
    files = [save(scene(72, 72, shift=9 * i, hue=25 * i + 5), tmp_path / f"own-{lang}{i}.png") for i in range(n)]
    return upload_files(page, files)


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_use_these_settings_of_a_completed_job(browser, server, done_job, tmp_path, lang):
    words = WORDS[lang]
    page = open_fresh_studio(offline_page(browser, server.url), server.url, lang)
    own = page_images(page, tmp_path, lang)
    page.fill("[data-testid=global-prompt]", "my own words")
    before = composer(page)
    assert before["post"] == "off" and before["seed"] == "" and before["quality"] == "70"

    button = page.locator(f"[data-job-id='{done_job['id']}'] [data-testid=job-use-settings]")
    assert button.inner_text().strip() == words["use"]
    button.click()
    page.wait_for_selector("[data-testid=composer-note]")
    assert page.inner_text("[data-testid=composer-note]") == f"{words['use']} ✓"
    got = composer(page)
    assert {k: got[k] for k in SLIDERS} == sliders_shown(SLIDERS)
    assert got["engine"] == "morph" and got["post"] == "auto"
    # The job's own words per pair (the global prompt filled the second); the composer's global
    # prompt is emptied so it does not add to them.
    assert got["pairs"] == ["first pair", "slow dolly in"] and got["prompt"] == ""
    # Settings only: the composer keeps its own images.
    assert card_ids(page) == own
    assert page.locator("[data-testid=editing-banner]").count() == 0
    screenshot(page, f"job-use-settings-{lang}.png")
    assert page.js_errors == []
    page.close()


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_duplicate_to_composer_takes_images_and_settings(browser, server, manual_job, tmp_path, lang):
    words = WORDS[lang]
    page = open_fresh_studio(offline_page(browser, server.url), server.url, lang)
    page_images(page, tmp_path, lang, n=2)  # replaced by the job's

    button = page.locator(f"[data-job-id='{manual_job['id']}'] [data-testid=job-duplicate]")
    assert button.inner_text().strip() == words["duplicate"]
    button.click()
    page.wait_for_selector("[data-testid=composer-note]")
    assert page.inner_text("[data-testid=composer-note]") == f"{words['duplicate']} ✓"
    # The job's images, in its order, each thumbnail loaded from the server.
    images = manual_job["images"]
    assert card_ids(page) == [i["id"] for i in images]
    thumbs = page.locator("[data-testid=image-card] img")
    assert [thumbs.nth(k).get_attribute("src") for k in range(len(images))] == [i["url"] for i in images]
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=image-card] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    got = composer(page)
    assert {k: got[k] for k in SLIDERS} == sliders_shown(manual_job["settings"])
    assert got["engine"] == "morph" and got["post"] == "manual" and got["pairs"] == ["pan left", "pan right"]
    assert page.is_checked("[data-testid=post-face]")
    assert page.is_checked("[data-testid=post-upscale] input[value='2']")
    assert page.is_checked("[data-testid=post-interpolate] input[value='4']")
    assert page.locator("[data-testid=editing-banner]").count() == 0
    assert page.is_enabled("[data-testid=submit]")
    # The failed card's long error (model URLs) wraps inside its card: the page is no wider than the window.
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    screenshot(page, f"job-duplicate-{lang}.png")
    assert page.js_errors == []
    page.close()


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_settings_from_a_video_on_the_page(browser, server, done_job, tmp_path, lang):
    words = WORDS[lang]
    final = tmp_path / "final.mp4"
    final.write_bytes(httpx.get(server.url + done_job["video_url"], timeout=60).content)
    plain = write_video(tmp_path / "holiday.mp4", np.zeros((4, 32, 32, 3), np.uint8), 30)
    photo = save(scene(64, 64), tmp_path / "photo.png")

    page = open_fresh_studio(offline_page(browser, server.url), server.url, lang)
    own = page_images(page, tmp_path, lang)
    assert page.inner_text("label:has([data-testid=settings-from-video])").strip() == words["from_video"]

    page.set_input_files("[data-testid=settings-from-video]", str(final))
    page.wait_for_selector("[data-testid=composer-note]")
    assert page.inner_text("[data-testid=composer-note]") == words["from_video_done"]
    got = composer(page)
    assert {k: got[k] for k in SLIDERS} == sliders_shown(SLIDERS)
    assert got["engine"] == "morph" and got["post"] == "auto"
    # The video carries the composer's own words: the global prompt and the one pair's text.
    assert got["prompt"] == "slow dolly in" and got["pairs"] == ["first pair", ""]
    assert card_ids(page) == own
    screenshot(page, f"settings-from-video-{lang}.png")

    for path, sentence in ((plain, words["no_settings"]), (photo, words["not_readable"])):
        page.set_input_files("[data-testid=settings-from-video]", str(path))
        error = page.wait_for_selector("[data-testid=composer-error]")
        page.wait_for_function(
            "name => document.querySelector('[data-testid=composer-error]')?.textContent.includes(name)", arg=path.name
        )
        assert sentence in error.inner_text()
        assert page.locator("[data-testid=composer-note]").count() == 0
        # The composer is left as it was.
        assert composer(page) == got
        screenshot(page, f"settings-from-video-{path.suffix[1:]}-{lang}.png")
    assert page.js_errors == []
    page.close()


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_edit_settings_of_a_queued_job(browser, server, client, lang):
    words = WORDS[lang]
    # A slow morph job holds the lane (12 images, 20 s a transition at 384 px); two wait behind it.
    ids = upload_scenes(client, 12, shift=3, hue=20, salt=1 if lang == "ko" else 2)
    slow = client.post(
        "/api/jobs", json={"images": ids, "engine": "morph", "settings": {"seconds": 20, "resolution": 384}}
    ).json()["id"]
    try:
        wait_for(client, slow, until=lambda j: j["status"] == "running", timeout=60)
        short = {
            "images": ids[:3],
            "engine": "morph",
            "prompts": ["one", "two"],
            "settings": {"seconds": 0.5, "quality": 50, "strength": 40, "resolution": 256, "seed": 5},
        }
        first = client.post("/api/jobs", json=short).json()["id"]
        # The one behind it closes its storyboard (a loop: image 3 back to image 1 has its own prompt).
        looped = {**short, "loop": True, "prompts": ["one", "two", "back home"]}
        second = client.post("/api/jobs", json=looped).json()["id"]
        position = client.get(f"/api/jobs/{first}").json()["position"]

        page = open_fresh_studio(offline_page(browser, server.url), server.url, lang)
        cards = "[data-testid=job-card][data-status=queued]"
        page.wait_for_function(f"document.querySelectorAll('{cards}').length === 2")
        button = page.locator(f"[data-job-id='{first}'] [data-testid=job-edit]")
        assert button.inner_text().strip() == words["edit"]
        button.click()
        page.wait_for_selector("[data-testid=editing-banner]")
        assert first[:8] in page.inner_text("[data-testid=editing-banner]")
        assert page.inner_text("[data-testid=submit]").strip() == words["save"]
        assert card_ids(page) == ids[:3]
        assert composer(page)["quality"] == "50"

        page.focus("[data-testid=quality]")
        page.keyboard.press("End")
        assert page.input_value("[data-testid=quality]") == "100"
        with page.expect_response(lambda r: f"/api/jobs/{first}" in r.url and r.request.method == "PATCH") as answer:
            page.click("[data-testid=submit]")
        assert answer.value.status == 200, answer.value.text()
        page.wait_for_selector("[data-testid=editing-banner]", state="detached")

        job = client.get(f"/api/jobs/{first}").json()
        assert job["status"] == "queued" and job["position"] == position
        assert job["settings"]["quality"] == 100
        assert {k: job["settings"][k] for k in ("seconds", "strength", "resolution", "seed")} == {
            "seconds": 0.5,
            "strength": 40,
            "resolution": 256,
            "seed": 5,
        }
        assert [p["original"] for p in job["prompts"]] == ["one", "two"]
        assert [i["id"] for i in job["images"]] == ids[:3]
        # The card is still the first waiting one, and the other keeps its place behind it.
        order = page.eval_on_selector_all(cards, "els => els.map(e => e.dataset.jobId)")
        assert order == [first, second]
        place = page.locator(f"[data-job-id='{first}'] [data-testid=job-queue-place]").inner_text()
        assert place == words["queue1"]
        assert page.locator(f"[data-job-id='{second}'] [data-testid=job-queue-place]").inner_text() == words["queue2"]
        assert client.get(f"/api/jobs/{slow}").json()["status"] == "running"
        screenshot(page, f"job-edit-queued-{lang}.png")

        # Duplicating the loop job brings its loop switch and the wrap pair's prompt along.
        page.click(f"[data-job-id='{second}'] [data-testid=job-duplicate]")
        page.wait_for_selector("[data-testid=pair][data-wrap=true]")
        assert page.is_checked("[data-testid=loop-switch]")
        assert composer(page)["pairs"] == ["one", "two", "back home"]
        assert page.js_errors == []
        page.close()
    finally:
        client.post("/api/jobs/cancel-queued")
        client.post(f"/api/jobs/{slow}/cancel")
        wait_for(client, slow, timeout=120)
