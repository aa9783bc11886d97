"""The two pages, their ES modules and their third-party browser files.

- `/` → frontend/index.html (studio), `/monitor` → frontend/monitor.html
- `/js/<path>` → frontend/js/<path> (our modules; no build step)
- `/vendor/<pkg>/<path>` → frontend/node_modules/<pkg>/<path> for the packages pinned in
  frontend/package.json. When set-up ran without npm the package folder is missing; the answer is then
  a redirect to the same pinned version on a public npm CDN, so the page works offline after set-up
  and still works on a machine with no Node.

Only pinned packages are served, and a path may not leave its package folder; a path with a NUL
or another character no file name can hold is simply not found (404). Every route answers HEAD as
it answers GET, without the body (uvicorn leaves the body out).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse

FRONTEND_DIR = Path(__file__).resolve().parents[3] / "frontend"

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# Pages change with the code; ask the browser to revalidate (ETag) instead of caching blindly.
_REVALIDATE = {"Cache-Control": "no-cache"}
# HEAD is answered like GET (same status and headers, no body): link checkers and `curl -I` use it.
PAGE_METHODS = ["GET", "HEAD"]


@lru_cache(maxsize=4)
def pinned_packages(frontend_dir: Path) -> dict[str, str]:
    """name → exact version from package.json (set-up installs exactly these via the lock file)."""
    manifest = json.loads((frontend_dir / "package.json").read_text(encoding="utf-8"))
    return dict(manifest.get("dependencies", {}))


def _inside(base: Path, relative: str) -> Path | None:
    """`base/relative` if it is a file that stays inside `base` (no `..`, no absolute path)."""
    if "\x00" in relative:
        return None  # no file has this name (and `resolve` would raise on it)
    base = base.resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, ValueError, RuntimeError):  # a name too long, a symlink loop
        return None
    if base != target and base not in target.parents:
        return None
    return target if target.is_file() else None


def _file(path: Path, cache: dict[str, str] | None = None) -> FileResponse:
    media_type = _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
    headers = {"X-Content-Type-Options": "nosniff", **(cache or _REVALIDATE)}
    return FileResponse(path, media_type=media_type, headers=headers)


def _split_package(path: str, pinned: dict[str, str]) -> tuple[str, str] | None:
    """'@scope/name/dist/x.js' or 'name/dist/x.js' → (package, 'dist/x.js') for a pinned package."""
    parts = path.split("/")
    count = 2 if parts and parts[0].startswith("@") else 1
    name, rest = "/".join(parts[:count]), "/".join(parts[count:])
    if name not in pinned or not rest:
        return None
    return name, rest


def build_router(frontend_dir: Path = FRONTEND_DIR) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.api_route("/", methods=PAGE_METHODS)
    async def studio_page() -> FileResponse:
        return _file(frontend_dir / "index.html")

    @router.api_route("/monitor", methods=PAGE_METHODS)
    async def monitor_page() -> FileResponse:
        return _file(frontend_dir / "monitor.html")

    @router.api_route("/js/{path:path}", methods=PAGE_METHODS)
    async def page_module(path: str) -> FileResponse:
        target = _inside(frontend_dir / "js", path)
        if target is None:
            raise HTTPException(404, f"no such page module: {path}")
        return _file(target)

    @router.api_route("/vendor/{path:path}", methods=PAGE_METHODS)
    async def vendor_file(path: str, request: Request):
        pinned = pinned_packages(frontend_dir)
        split = _split_package(path, pinned)
        if split is None:
            raise HTTPException(404, f"not a pinned frontend package: {path}")
        name, rest = split
        package_dir = frontend_dir / "node_modules" / name
        if package_dir.is_dir():
            target = _inside(package_dir, rest)
            if target is None:
                raise HTTPException(404, f"{name} has no file {rest}")
            installed = _installed_version(package_dir)
            if installed == pinned[name]:
                # The URL has no version, but the file only changes with a new pin: an hour is safe.
                return _file(target, {"Cache-Control": "public, max-age=3600"})
            # node_modules is stale (an old npm ci): the pinned version is what the page expects.
        if ".." in rest.split("/") or "\x00" in rest:
            raise HTTPException(404, f"{name} has no file {rest}")
        settings = getattr(request.app.state, "settings", None)
        cdn = (getattr(settings, "vendor_cdn", "") or "https://cdn.jsdelivr.net/npm").rstrip("/")
        return RedirectResponse(f"{cdn}/{name}@{pinned[name]}/{rest}", status_code=307)

    return router


def _installed_version(package_dir: Path) -> str | None:
    try:
        return json.loads((package_dir / "package.json").read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None
