"""Server paths out of what clients see: the setting that names a folder instead of the folder.

Job errors and `/api/health` reach anyone who can open the studio (health needs no token), and a
path tells them the user name, the mount layout and where the models live. The full text stays in
the server log, which is where the person who can act on a path reads it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from backend.utils.config import Settings

# Settings that name folders; each is shown by its environment variable.
PATH_SETTINGS = (
    "data_dir",
    "models_dir",
    "codeformer_dir",
    "rife_dir",
    "upscaler_dir",
    "facexlib_dir",
    "framepack_dir",
    "marian_ko_en_dir",
)
# Any other absolute path (two parts or more), not the path part of a URL.
_OTHER_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+~-]+/)+([\w.@+~-]*)")


def _env_name(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    choices = getattr(alias, "choices", None)
    return str(choices[0]) if choices else field.upper()


def _prefixes(settings: Settings) -> list[tuple[str, str]]:
    pairs = []
    for field in PATH_SETTINGS:
        value = str(getattr(settings, field, "") or "")
        if not value or value in (".", "/"):
            continue
        name = _env_name(field)
        forms = {value.rstrip("/")}
        try:
            forms.add(str(Path(value).expanduser().resolve()))
        except (OSError, RuntimeError):
            pass
        pairs += [(form, name) for form in forms if form and form not in (".", "/")]
    # The longest first, so a folder inside another is named by its own setting.
    return sorted(pairs, key=lambda p: len(p[0]), reverse=True)


def hide_paths(text: str | None, settings: Settings) -> str | None:
    if not text:
        return text
    for prefix, name in _prefixes(settings):
        text = text.replace(prefix, name)
    return _OTHER_PATH.sub(lambda m: "…/" + m.group(1), text)


def hide_paths_in(value: Any, settings: Settings) -> Any:
    """`hide_paths` over every string in a JSON-like value."""
    if isinstance(value, str):
        return hide_paths(value, settings)
    if isinstance(value, dict):
        return {k: hide_paths_in(v, settings) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_paths_in(v, settings) for v in value]
    return value
