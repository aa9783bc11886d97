"""Debian's Chromium driven by Playwright (never `playwright install`), shared by the page tests."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.helpers.server import ROOT

CHROMIUM = Path(os.environ.get("STUDIO_TEST_CHROMIUM", "/usr/bin/chromium"))
# No background networking: this machine's network is closed and Chromium would keep trying.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# In CI the set-up installs both, so there a missing one fails the tests instead of skipping them.
REQUIREMENTS = [
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"), reason=f"{CHROMIUM} missing: apt-get install -y chromium"
    ),
    pytest.mark.skipif(
        not (ROOT / "frontend" / "node_modules" / "react").is_dir() and not os.environ.get("CI"),
        reason="frontend packages missing: npm ci --prefix frontend",
    ),
]


@contextlib.contextmanager
def chromium_context(profile: Path):
    """A browser context with its own fresh user data dir (only a persistent context allows that)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
            locale="en-US",
        )
        try:
            yield context
        finally:
            context.close()


def offline_page(context, server_url: str):
    """A new page that may reach only the studio itself (this machine is offline), with the page's
    JavaScript errors collected in `page.js_errors`."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route(
        "**/*",
        lambda route: route.continue_()
        if route.request.url.startswith((server_url, "data:", "blob:"))
        else route.abort(),
    )
    page.js_errors = errors
    return page


def reset_storage(page, server_url: str, lang: str | None = "en") -> None:
    """Empties the studio's saved draft and sets the page language for `server_url`'s origin, from a
    document where no studio script runs (its JSON health answer). Clearing it on the live page and
    reloading races the page's own draft saving, which a late server answer can trigger."""
    page.goto(server_url + "/api/health")
    page.evaluate(
        "(lang) => { localStorage.removeItem('studio.draft'); if (lang) localStorage.setItem('studio.lang', lang); }",
        lang,
    )


def open_fresh_studio(page, server_url: str, lang: str = "en"):
    """`page` on the studio with no saved draft, in `lang`, once its socket is open."""
    reset_storage(page, server_url, lang)
    page.goto(server_url + "/")
    page.wait_for_selector("[data-testid=socket-status][data-state=open]")
    return page


ARTIFACTS = ROOT / "test-artifacts"  # gitignored: screenshots for a person to look at


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def card_ids(page) -> list[str]:
    """The upload ids of the studio's image cards, in page order."""
    return page.eval_on_selector_all("[data-testid=image-card]", "els => els.map(e => e.dataset.uploadId)")


def upload_files(page, files: list[Path]) -> list[str]:
    """Adds `files` through the page's file input and waits until each has its card with an upload id;
    returns every card's upload id, in page order."""
    before = len(card_ids(page))
    page.set_input_files("[data-testid=file-input]", [str(f) for f in files])
    page.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=image-card]')].filter(e => e.dataset.uploadId).length === n",
        arg=before + len(files),
        timeout=30_000,
    )
    return card_ids(page)
