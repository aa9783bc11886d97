"""The pages, their modules and /vendor: local files when installed, else the pinned CDN version."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from backend.utils.config import Settings
from backend.web.routes.frontend import FRONTEND_DIR, build_router, pinned_packages

PACKAGES = {
    "react": "umd/react.production.min.js",
    "react-dom": "umd/react-dom.production.min.js",
    "htm": "dist/htm.module.js",
    "@tailwindcss/browser": "dist/index.global.js",
    "uplot": "dist/uPlot.esm.js",
}


def _client(frontend_dir: Path, **settings) -> httpx.AsyncClient:
    app = FastAPI()
    app.state.settings = Settings(**settings)
    app.include_router(build_router(frontend_dir))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_every_package_is_pinned_exactly_and_locked():
    manifest = json.loads((FRONTEND_DIR / "package.json").read_text())
    lock = json.loads((FRONTEND_DIR / "package-lock.json").read_text())
    deps = manifest["dependencies"]
    assert set(deps) == set(PACKAGES)
    assert deps["react"].startswith("18.") and deps["react-dom"] == deps["react"]
    for name, version in deps.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
        assert lock["packages"][""]["dependencies"][name] == version


def test_the_pages_load_only_pinned_vendor_files_that_exist():
    """Every /vendor URL the pages and modules name is a pinned package's real file."""
    sources = [FRONTEND_DIR / "index.html", FRONTEND_DIR / "monitor.html", *FRONTEND_DIR.glob("js/**/*.js")]
    urls = set()
    for source in sources:
        urls |= set(re.findall(r"/vendor/([^\"'\s)]+)", source.read_text()))
    assert {f"{name}/{path}" for name, path in PACKAGES.items()} <= urls | {"uplot/dist/uPlot.esm.js"}
    pinned = pinned_packages(FRONTEND_DIR)
    for url in urls:
        name = "/".join(url.split("/")[:2]) if url.startswith("@") else url.split("/")[0]
        assert name in pinned, url
    if (FRONTEND_DIR / "node_modules").is_dir():
        for url in urls:
            assert (FRONTEND_DIR / "node_modules" / url).is_file(), url


async def test_pages_modules_and_installed_vendor_files_are_served():
    if not (FRONTEND_DIR / "node_modules" / "react").is_dir():
        pytest.skip("npm ci --prefix frontend has not run")
    async with _client(FRONTEND_DIR) as client:
        for url, marker in (("/", "/js/studio/main.js"), ("/monitor", "/js/monitor/main.js")):
            page = await client.get(url)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert marker in page.text
        module = await client.get("/js/studio/main.js")
        assert module.status_code == 200
        assert module.headers["content-type"].startswith("text/javascript")
        for name, path in PACKAGES.items():
            response = await client.get(f"/vendor/{name}/{path}")
            assert response.status_code == 200, name
            assert response.content == (FRONTEND_DIR / "node_modules" / name / path).read_bytes()
        assert (await client.get("/vendor/uplot/dist/uPlot.min.css")).headers["content-type"].startswith("text/css")


async def test_unknown_packages_missing_files_and_escapes_are_404():
    async with _client(FRONTEND_DIR) as client:
        for url in (
            "/vendor/left-pad/index.js",  # not pinned
            "/vendor/js-tokens/index.js",  # installed, but only as a dependency: not served
            "/vendor/react",  # no file part
            "/vendor/react/%2e%2e/%2e%2e/package.json",
            "/vendor/react/..%2f..%2f..%2fpackage.json",
            "/js/%2e%2e/package.json",
            "/js/nope.js",
        ):
            response = await client.get(url)
            assert response.status_code == 404, url
            assert response.json()["detail"]


async def test_missing_node_modules_redirects_to_the_pinned_cdn_version(tmp_path):
    shutil.copy(FRONTEND_DIR / "package.json", tmp_path / "package.json")
    version = pinned_packages(FRONTEND_DIR)["react"]
    async with _client(tmp_path) as client:
        response = await client.get("/vendor/react/umd/react.production.min.js")
        assert response.status_code == 307
        assert response.headers["location"] == (
            f"https://cdn.jsdelivr.net/npm/react@{version}/umd/react.production.min.js"
        )
        scoped = await client.get("/vendor/@tailwindcss/browser/dist/index.global.js")
        assert scoped.headers["location"].startswith("https://cdn.jsdelivr.net/npm/@tailwindcss/browser@")
    async with _client(tmp_path, vendor_cdn="https://unpkg.com/") as client:
        response = await client.get("/vendor/htm/dist/htm.module.js")
        assert response.headers["location"] == "https://unpkg.com/htm@3.1.1/dist/htm.module.js"


async def test_a_stale_install_is_not_served_in_place_of_the_pin(tmp_path):
    shutil.copy(FRONTEND_DIR / "package.json", tmp_path / "package.json")
    stale = tmp_path / "node_modules" / "htm"
    (stale / "dist").mkdir(parents=True)
    (stale / "package.json").write_text(json.dumps({"name": "htm", "version": "3.0.0"}))
    (stale / "dist" / "htm.module.js").write_text("export default null;")
    async with _client(tmp_path) as client:
        response = await client.get("/vendor/htm/dist/htm.module.js")
    assert response.status_code == 307 and "htm@3.1.1" in response.headers["location"]
