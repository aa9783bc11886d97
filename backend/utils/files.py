"""Where the studio's stored files live on disk, how their paths are kept in the store, and the
URLs that serve them: the one place that says so.

An upload is kept as `<uploads folder>/<id>.png` and served at `/files/uploads/<id>.png`; a job's
outputs under `outputs/<job>/` (takes, previews, the joined and final videos), served under
`/files/outputs/`. The store keeps every path relative to the data folder, so a moved data folder
still finds its files. The app mounts these prefixes and every view links through here, so the name
on disk and the link in a view cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

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


# --- a job's outputs ----------------------------------------------------------------------------
FINAL_NAME = "final.mp4"
JOINED_NAME = "joined.mp4"  # the chosen takes joined, before post-processing makes the final file


def output_dir(settings: Settings, job_id: str) -> Path:
    return settings.outputs_dir / job_id


def take_path(folder: Path, index: int, take: int) -> Path:
    """Take 1 keeps the name a transition's segment file always had, so folders made before takes
    existed need no renaming; later takes sit beside it."""
    if take == 1:
        return folder / f"segment_{index:03d}.mp4"
    return folder / f"segment_{index:03d}_take_{take}.mp4"


def partial_path(path: Path) -> Path:
    """Where a file is written before it is complete (renamed into place once it is)."""
    return path.with_suffix(".partial.mp4")


def tagged_path(path: Path) -> Path:
    """Where a take is copied with its score in the file's tags, before it takes its own name."""
    return path.with_suffix(".tagged.mp4")


def unfinished_files(folder: Path) -> list[Path]:
    """Files a write left behind when it was cut off (a failed or killed take, a join)."""
    return [*folder.glob("*.partial.mp4"), *folder.glob("*.tagged.mp4")]


def preview_path(folder: Path, index: int, section: int) -> Path:
    return folder / f"preview_{index:03d}_{section:02d}.mp4"


def is_preview(path: str | Path) -> bool:
    return PurePath(path).name.startswith("preview_")


def waiting_path(folder: Path, index: int) -> Path:
    """A take's raw frames that arrived before its turn to be joined (Ray pool)."""
    return folder / f".waiting_{index:03d}.npy"


WAITING_GLOB = ".waiting_*.npy"
EXPORTS_FOLDER = "exports"


def exports_dir(settings: Settings, job_id: str) -> Path:
    """Where a job's exports (WebM, GIF, frames, …) go: inside its folder, deleted with it."""
    return output_dir(settings, job_id) / EXPORTS_FOLDER


def export_url(job_id: str, name: str) -> str:
    return f"{OUTPUTS_URL}/{job_id}/{EXPORTS_FOLDER}/{name}"


# --- paths as the store keeps them ----------------------------------------------------------------
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def data_relative(value: str | None, data_dir: Path, job_id: str | None = None) -> str | None:
    """A stored path as it is kept now: relative to the data folder, with '/' separators.

    Absolute paths written before a move still name the folder they were made in: the part from
    `outputs/<job>/` on is what matters, since every output of a job lives there.
    """
    if not value:
        return value
    # A folder written on Windows and opened on Linux (or back) still has its outputs found.
    path = PureWindowsPath(value) if _WINDOWS_ABSOLUTE.match(value) else PurePath(value)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(data_dir).as_posix()
    except ValueError:
        pass
    parts = path.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "outputs" and (job_id is None or parts[i + 1] == job_id):
            return PurePosixPath(*parts[i:]).as_posix()
    if job_id is not None:
        return f"outputs/{job_id}/{path.name}"
    return None


def stored_path(settings: Settings, path: Path) -> str:
    """How a file under the data folder is written in the store: relative to that folder."""
    return data_relative(str(path), settings.data_dir) or str(path)


def resolve_stored(settings: Settings, value: str) -> Path:
    """A stored path as a file in this data folder, wherever the folder was when it was written."""
    rel = data_relative(value, settings.data_dir)
    return settings.data_dir / rel if rel else Path(value)


def output_url(settings: Settings, path: str | Path | None) -> str | None:
    """The URL of a stored output; None for one that is not under the outputs folder (never raises:
    a view must not fail for one odd value)."""
    if not path:
        return None
    rel = data_relative(str(path), settings.data_dir)
    if not rel or not rel.startswith("outputs/"):
        return None
    return f"{FILES_URL}/{rel}"


def output_for_url(settings: Settings, url: str) -> Path | None:
    """The file behind a `/files/outputs/...` URL a view links, or None when it names none inside
    the outputs folder."""
    url = url.split("?", 1)[0].split("#", 1)[0]
    prefix = OUTPUTS_URL + "/"
    if not url.startswith(prefix):
        return None
    root = settings.outputs_dir.resolve()
    path = (root / url[len(prefix) :]).resolve()
    return path if path.is_relative_to(root) else None
