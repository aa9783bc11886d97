"""The storyboard in the real page (Debian's Chromium through Playwright, the real server, the morph
engine): a finished job shows each transition's takes with their scores; re-roll one transition with
its own length and seed, pick the earlier take back, delete the other one and rebuild, all from the page."""

from __future__ import annotations

import httpx

from backend.utils.video_io import probe
from tests.helpers.browser import REQUIREMENTS
from tests.helpers.browser import offline_page as _page
from tests.helpers.browser import screenshot as _screenshot
from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer

pytestmark = REQUIREMENTS


def _takes(page, index: int) -> list[tuple[str, str]]:
    return page.eval_on_selector_all(
        f"[data-testid=transition][data-index='{index}'] [data-testid=take]",
        "els => els.map(e => [e.dataset.take, e.dataset.chosen])",
    )


def test_storyboard_reroll_pick_delete_and_rebuild_from_the_page(browser, tmp_path):
    with (
        StudioServer(tmp_path, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        files = [
            ("files", (f"i{i}.png", encoded(scene(160, 120, shift=12 * i, hue=70 * i)), "image/png")) for i in range(3)
        ]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        job_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 64}}).json()["id"]
        assert wait_for(c, job_id)["status"] == "completed"

        page = _page(browser, srv.url)
        page.goto(f"{srv.url}/?lang=en")
        page.evaluate("() => localStorage.setItem('studio.lang', 'en')")
        page.reload()
        page.wait_for_selector("[data-testid=storyboard] [data-testid=take-video]", timeout=30_000)
        assert page.locator("[data-testid=transition]").count() == 2
        assert _takes(page, 1) == [["1", "true"]]
        score = page.inner_text("[data-testid=transition][data-index='1'] [data-testid=take-score]")
        assert score.startswith("Score ") and score != "Score –"

        # Re-roll transition 2 with its own length and seed.
        row = page.locator("[data-testid=transition][data-index='1']")
        row.locator("[data-testid=take-reroll]").click()
        row.locator("[data-testid=reroll-seconds]").fill("2.4")
        row.locator("[data-testid=reroll-seed]").fill("5")
        row.locator("[data-testid=reroll-submit]").click()
        page.wait_for_function(
            """() => { const t = [...document.querySelectorAll("[data-testid=transition][data-index='1'] [data-testid=take]")];
              return t.length === 2 && t[1].dataset.chosen === 'true' && t[1].querySelector('video'); }""",
            timeout=60_000,
        )
        page.wait_for_selector("[data-testid=job-card][data-status=completed]", timeout=60_000)
        job = wait_for(c, job_id)
        take2 = job["transitions"][1]["takes"][1]
        assert (take2["seed"], take2["frames"]) == (5, 73)
        assert probe(srv.data_dir / "outputs" / job_id / "final.mp4").frames == 37 + 73 - 1
        _screenshot(page, "studio-takes-rerolled.png")

        # Pick take 1 back, delete take 2, rebuild.
        row.locator("[data-testid=take][data-take='1'] [data-testid=take-choose]").click()
        page.wait_for_function(
            """() => document.querySelector("[data-testid=transition][data-index='1'] [data-testid=take][data-take='1']")
              ?.dataset.chosen === 'true'""",
            timeout=30_000,
        )
        row.locator("[data-testid=take][data-take='2'] [data-testid=take-delete]").click()
        page.wait_for_function(
            """() => document.querySelectorAll("[data-testid=transition][data-index='1'] [data-testid=take]").length === 1""",
            timeout=30_000,
        )
        before = wait_for(c, job_id)["finished_at"]
        page.click("[data-testid=job-rebuild]")
        job = wait_for(c, job_id, until=lambda j: j["status"] == "completed" and j["finished_at"] != before)
        page.wait_for_selector("[data-testid=job-card][data-status=completed] [data-testid=job-video]", timeout=60_000)
        # The rebuilt video is take 1 of both transitions again: 37 + 37 frames, one shared.
        assert job["current"]["frames"] == 37 + 37 - 1
        assert probe(srv.data_dir / "outputs" / job_id / "final.mp4").frames == 37 + 37 - 1
        assert not (srv.data_dir / "outputs" / job_id / "segment_001_take_2.mp4").exists()
        assert not page.locator("[data-testid=takes-error]").count()
        _screenshot(page, "studio-takes-rebuilt.png")

        # Best of 2 from the composer: two takes of the one transition, the better score chosen.
        images = [tmp_path / f"p{i}.png" for i in range(2)]
        for i, path in enumerate(images):
            path.write_bytes(encoded(scene(160, 120, shift=12 * i, hue=70 * i)))
        page.set_input_files("[data-testid=file-input]", [str(p) for p in images])
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=image-card]')].filter(e => e.dataset.uploadId).length === 2",
            timeout=30_000,
        )
        assert page.eval_on_selector_all(
            "[data-testid=takes-per-transition] option", "els => els.map(e => e.value)"
        ) == ["1", "2", "3", "4"]
        page.select_option("[data-testid=takes-per-transition]", "2")
        page.select_option("[data-testid=resolution]", "256")
        page.click("[data-testid=submit]")
        page.wait_for_function("() => document.querySelectorAll('[data-testid=job-card]').length === 2", timeout=30_000)
        best_id = page.get_attribute("[data-testid=job-card] >> nth=0", "data-job-id")
        best = wait_for(c, best_id)
        assert best["status"] == "completed" and best["settings"]["takes_per_transition"] == 2
        [transition] = best["transitions"]
        overall = {t["take"]: t["overall"] for t in transition["takes"]}
        assert sorted(overall) == [1, 2] and transition["chosen"] == max(overall, key=overall.get)
        page.wait_for_function(
            "id => document.querySelectorAll(`[data-job-id='${id}'] [data-testid=take]`).length === 2",
            arg=best_id,
            timeout=30_000,
        )

        # Korean.
        page.evaluate("() => localStorage.setItem('studio.lang', 'ko')")
        page.reload()
        page.wait_for_selector("[data-testid=storyboard]", timeout=30_000)
        assert "전환 1" in page.inner_text("[data-testid=storyboard]")
        assert "영상 다시 만들기" in page.inner_text("[data-testid=job-rebuild]")
        _screenshot(page, "studio-takes-ko.png")
        assert page.js_errors == []
