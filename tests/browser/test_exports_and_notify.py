"""Exports and "told when it is done" in the real page (Debian's Chromium through Playwright, the
real server, the morph engine), in Korean and in English: a GIF made from a finished job's
Export / 내보내기 menu (and one take's last frame as PNG), downloaded and decoded; the tab title
says the job is done, the favicon is redrawn while it runs, the notification permission is asked
only on a click, and a granted page shows a notification."""

from __future__ import annotations

import io

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers.browser import REQUIREMENTS, chromium_context, open_fresh_studio
from tests.helpers.browser import offline_page as _page
from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer

pytestmark = REQUIREMENTS

SHOTS = "/tmp"
WORDS = {
    "ko": {
        "export": "내보내기",
        "done": "완료",
        "title": "✓ 완료 — FramePack 비디오 스튜디오",
        "ask": "완료 알림 받기",
    },
    "en": {
        "export": "Export",
        "done": "Done",
        "title": "✓ Done — FramePack Video Studio",
        "ask": "Notify me when done",
    },
}

# Records notifications and permission requests; the page's own Notification stays underneath.
SPY = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.__notes = []; window.__asked = 0;
  class Spy extends Real {
    constructor(title, options) { super(title, options); window.__notes.push(title); }
  }
  Object.defineProperty(Spy, "permission", { get: () => Real.permission });
  Spy.requestPermission = (...args) => { window.__asked += 1; return Real.requestPermission(...args); };
  window.Notification = Spy;
})();
"""


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui-exports")
    with (
        StudioServer(tmp, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        files = [
            ("files", (f"i{i}.png", encoded(scene(96, 96, shift=8 * i, hue=60 * i)), "image/png")) for i in range(3)
        ]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        yield srv, c, ids


@pytest.fixture
def browser(tmp_path):
    with chromium_context(tmp_path / "profile") as context:
        yield context


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_a_gif_is_exported_from_the_page(studio, browser, lang):
    srv, c, ids = studio
    job_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 96}}).json()["id"]
    assert wait_for(c, job_id)["status"] == "completed"
    page = open_fresh_studio(_page(browser, srv.url), srv.url, lang)
    card = page.locator(f"[data-testid=job-card][data-job-id='{job_id}']")
    card.locator("[data-testid=job-video]").wait_for(timeout=30_000)

    opener = card.locator("[data-testid=export-open-job]")
    assert opener.inner_text().strip() == WORDS[lang]["export"]
    opener.click()
    menu = card.locator("[data-testid=export-menu-job]")
    formats = menu.locator("[data-testid=export-format] option").all_inner_texts()
    assert len(formats) == 5 and ("GIF (움직이는 이미지)" if lang == "ko" else "GIF (animated image)") in formats
    menu.locator("[data-testid=export-format]").select_option("gif")
    menu.locator("[data-testid=export-width]").select_option("320")
    menu.locator("[data-testid=export-fps]").select_option("10")
    menu.locator("[data-testid=export-submit]").click()
    link = menu.locator("[data-testid=export-download]")
    link.wait_for(timeout=60_000)
    assert menu.locator("[data-testid=export-state]").inner_text().strip() == WORDS[lang]["done"]
    href, name = link.get_attribute("href"), link.get_attribute("download")
    assert href.startswith(f"/files/outputs/{job_id}/exports/") and href.endswith(".gif")
    assert name == f"job-{job_id[:8]}.gif" and name in link.inner_text()
    page.screenshot(path=f"{SHOTS}/exports-gif-{lang}.png", full_page=True)

    data = c.get(href).content
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    # 73 frames at 30 fps → 10 fps keeps every third: 25 frames, 320 px wide (square video).
    assert len(frames) == 25 and frames[0].shape == (320, 320, 3)

    # One take's last frame as PNG, from the take's own menu.
    take = card.locator("[data-testid=transition][data-index='1'] [data-testid=take][data-take='1']")
    take.locator("[data-testid=export-open-take]").click()
    take_menu = take.locator("[data-testid=export-menu-take]")
    take_menu.locator("[data-testid=export-format]").select_option("frame_png")
    assert take_menu.locator("[data-testid=export-frame]").input_value() == "last"
    take_menu.locator("[data-testid=export-submit]").click()
    png_link = take_menu.locator("[data-testid=export-download]")
    png_link.wait_for(timeout=60_000)
    assert png_link.get_attribute("download") == f"job-{job_id[:8]}-transition2-take1-frame36.png"
    png = np.asarray(Image.open(io.BytesIO(c.get(png_link.get_attribute("href")).content)).convert("RGB"))
    assert png.shape == (96, 96, 3)
    page.screenshot(path=f"{SHOTS}/exports-take-png-{lang}.png", full_page=True)
    assert page.js_errors == []


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_title_and_favicon_say_when_a_job_is_done(studio, browser, lang):
    srv, c, ids = studio
    browser.add_init_script(SPY)
    page = open_fresh_studio(_page(browser, srv.url), srv.url, lang)
    # Nothing is asked on load: the bell is a button, and asking takes a click.
    ask = page.locator("[data-testid=notify-ask]")
    assert WORDS[lang]["ask"] in ask.inner_text()
    assert page.evaluate("() => window.__asked") == 0
    ask.click()
    page.wait_for_function("() => window.__asked === 1")

    browser.grant_permissions(["notifications"], origin=srv.url)
    page.reload()
    page.wait_for_selector("[data-testid=socket-status][data-state=open]")
    assert page.locator("[data-testid=notify-state]").get_attribute("data-permission") == "granted"
    assert page.evaluate("() => window.__asked") == 0  # granted: nothing to ask
    page.evaluate(
        """() => { window.__icons = [];
          const link = document.querySelector("link[rel~='icon']");
          new MutationObserver(() => window.__icons.push([link.dataset.state, link.href.length]))
            .observe(link, { attributes: true, attributeFilter: ["href"] }); }"""
    )
    title_before = page.title()
    assert "✓" not in title_before

    job_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 4.8, "resolution": 96}}).json()["id"]
    page.wait_for_function("t => document.title === t", arg=WORDS[lang]["title"], timeout=120_000)
    assert wait_for(c, job_id)["status"] == "completed"
    icons = page.evaluate("() => window.__icons")
    states = [s for s, _ in icons]
    running = [s for s in states if s.startswith("running-")]
    assert len(set(running)) >= 2, states  # redrawn as the ring fills
    assert states[-1] == "done", states
    assert page.evaluate("() => document.querySelector(\"link[rel~='icon']\").href").startswith("data:image/png")
    notes = page.evaluate("() => window.__notes")
    assert notes == [WORDS[lang]["title"]], notes
    page.screenshot(path=f"{SHOTS}/notify-title-{lang}.png")

    # The next click puts the plain title back.
    page.wait_for_timeout(600)
    page.mouse.click(5, 5)
    page.wait_for_function("t => document.title === t", arg=title_before, timeout=10_000)
    assert page.js_errors == []
