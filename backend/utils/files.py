"""Where the studio's stored files live on disk and the URLs that serve them.

An upload is kept as `<uploads folder>/<id>.png` and served at `/files/uploads/<id>.png`; a job's
outputs under `/files/outputs/`. The app mounts these prefixes and every view links through here, so
the name on disk and the link in a view cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from backend.utils.config import Settings

FILES_URL = "/files"
UPLOADS_URL = f"{FILES_URL}/uploads"
OUTPUTS_URL = f"{FILES_URL}/outputs"
UPLOAD_SUFFIX = ".png"  # every upload is stored re-encoded as PNG, whatever was sent


def upload_name(upload_id: str) -> str:
    return f"{upload_id}{UPLOAD_SUFFIX}"


def upload_path(settings: Settings, upload_id: str) -> Path:
    return settings.uploads_dir / upload_name(upload_id)


def upload_url(upload_id: str) -> str:
    return f"{UPLOADS_URL}/{upload_name(upload_id)}"
