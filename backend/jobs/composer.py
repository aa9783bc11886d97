"""What the composer holds besides its images (engine, sliders, post-processing, prompts), kept
and given back: named presets in the store, the built-in ones, and the settings a video the studio
made carries in its container tags.

A preset or a video's settings is a `ComposerSettings`; the page applies what it has and keeps the
rest of the composer as it is. Built-ins are code, not rows: they cannot be renamed or deleted,
and a new studio version may improve them.
"""

from __future__ import annotations

import ast
import json
import logging
import secrets
import unicodedata
from typing import Any

from pydantic import ValidationError

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.contracts.models import (
    MAX_PRESET_NAME_CHARS,
    ComposerSettings,
    PresetCreate,
    PresetList,
    PresetView,
    VideoSettings,
)
from backend.jobs.store import Store

log = logging.getLogger(__name__)

# The built-ins, from the smart-parameter table (README): quality q → round(8 + 17q/100) steps and
# CRF round(28 − 12q/100), below 30 the fast mode (MagCache); seconds → 1.2 s sections.
BUILTINS: dict[str, dict[str, Any]] = {
    # Fast look: one 1.2 s section per transition, quality 20 (11 steps, the fast mode, CRF 26),
    # a 384 px bucket, one take, no post-processing.
    "draft": {
        "name": "preset_builtin_draft",
        "settings": {
            "settings": {"seconds": 1.2, "quality": 20, "resolution": 384, "takes_per_transition": 1},
            "postprocess": {"mode": "off"},
        },
    },
    # The best the sliders give: quality 100 (25 steps, no cache, CRF 16), 640 px, best of 2 takes
    # by score, and Auto post-processing (restore faces, upscale, interpolate as the video needs).
    "final": {
        "name": "preset_builtin_final",
        "settings": {
            "settings": {"seconds": 2.4, "quality": 100, "resolution": 640, "takes_per_transition": 2},
            "postprocess": {"mode": "auto"},
        },
    },
    # The studio has no loop switch: a loop is a storyboard whose last image is its first. This
    # preset sets strength 100 (each transition lands exactly on its next image, so the last one
    # closes on the first picture without a jump), 2.4 s, quality 70, no post-processing (an
    # interpolated or upscaled file would still loop; kept off so the seam is the model's own).
    "loop": {
        "name": "preset_builtin_loop",
        "settings": {
            "settings": {"seconds": 2.4, "quality": 70, "strength": 100, "takes_per_transition": 1},
            "postprocess": {"mode": "off"},
        },
    },
    # A free Colab T4 (15 GB, no bf16, 12.7 GB RAM): the 480 px bucket the memory plan picks there,
    # quality 50 (16 steps, no cache), 2.4 s, one take, no post-processing (its models would not
    # fit beside FramePack in the RAM).
    "t4": {
        "name": "preset_builtin_t4",
        "settings": {
            "settings": {"seconds": 2.4, "quality": 50, "resolution": 480, "takes_per_transition": 1},
            "postprocess": {"mode": "off"},
        },
    },
}


def _builtin_view(key: str) -> PresetView:
    spec = BUILTINS[key]
    return PresetView(
        id=f"builtin-{key}",
        name=messages.render(spec["name"], "en"),
        name_message=messages.message(spec["name"]),
        builtin=key,
        settings=ComposerSettings.model_validate(spec["settings"]),
    )


def name_key(name: str) -> str:
    """Two names are the same preset when they differ only in case, width or spacing."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


class Presets:
    """The presets: the built-ins and the user's, stored in the studio's SQLite file."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _view(self, row: dict) -> PresetView:
        try:
            settings = ComposerSettings.model_validate(row["settings"])
        except ValidationError:  # saved by a version that knew other fields: what still applies
            log.warning("preset %s has settings this version does not read; shown empty", row["id"])
            settings = ComposerSettings()
        return PresetView(
            id=row["id"],
            name=row["name"],
            settings=settings,
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def list(self) -> PresetList:
        views = [_builtin_view(k) for k in BUILTINS] + [self._view(r) for r in self.store.presets()]
        return PresetList(presets=views, max_name_chars=MAX_PRESET_NAME_CHARS)

    def _clean_name(self, name: str, own_id: str | None = None) -> tuple[str, str]:
        shown = " ".join(name.split())
        if not shown:
            raise StudioError("preset_name_empty")
        if len(shown) > MAX_PRESET_NAME_CHARS:
            raise StudioError("preset_name_too_long", limit=MAX_PRESET_NAME_CHARS, count=len(shown))
        key = name_key(shown)
        reserved = {name_key(n) for spec in BUILTINS.values() for n in messages.texts(spec["name"]).values()}
        taken = self.store.preset_named(key)
        if key in reserved or (taken is not None and taken["id"] != own_id):
            raise StudioError("preset_name_taken", name=shown)
        return shown, key

    def _user_row(self, preset_id: str) -> dict:
        if preset_id.startswith("builtin-") and preset_id.removeprefix("builtin-") in BUILTINS:
            raise StudioError(
                "preset_builtin", name=messages.message(BUILTINS[preset_id.removeprefix("builtin-")]["name"])
            )
        row = self.store.get_preset(preset_id)
        if row is None:
            raise StudioError("preset_not_found", preset_id=preset_id)
        return row

    def create(self, body: PresetCreate) -> PresetView:
        shown, key = self._clean_name(body.name)
        preset_id = "p" + secrets.token_hex(6)
        self.store.add_preset(preset_id, shown, key, body.settings.model_dump(mode="json", exclude_none=True))
        return self._view(self._user_row(preset_id))

    def rename(self, preset_id: str, name: str) -> PresetView:
        self._user_row(preset_id)
        shown, key = self._clean_name(name, own_id=preset_id)
        self.store.rename_preset(preset_id, shown, key)
        return self._view(self._user_row(preset_id))

    def delete(self, preset_id: str) -> None:
        self._user_row(preset_id)
        self.store.delete_preset(preset_id)


# --- settings in a video ------------------------------------------------------------------------
def composer_settings(request: dict) -> dict:
    """What a job's final file carries in its `studio_settings` tag: the request's engine, sliders,
    post-processing and prompts (the user's own words, not the translation)."""
    keys = ("engine", "settings", "postprocess", "prompt", "prompts")
    return {k: request[k] for k in keys if request.get(k) is not None}


def _parse(text: str | None) -> Any:
    """A tag's JSON; a file post-processed before tags were written as JSON holds Python's repr of
    the dict, read as a literal (never evaluated)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _from_params(params: dict, comment: Any) -> dict:
    """An older video's settings, rebuilt from its resolved parameters and its comment."""
    segments = [s for s in params.get("segments") or [] if isinstance(s, dict)]
    sliders: dict[str, Any] = {}
    for key in ("quality", "resolution", "seed"):
        if isinstance(params.get(key), (int, float)) and not isinstance(params.get(key), bool):
            sliders[key] = params[key]
    if segments:
        first = segments[0]
        if isinstance(first.get("seconds"), (int, float)):
            sliders["seconds"] = round(float(first["seconds"]), 1)
        if isinstance(first.get("strength"), int):
            sliders["strength"] = first["strength"]
    out: dict[str, Any] = {"settings": sliders}
    if params.get("engine") in ("framepack", "morph"):
        out["engine"] = params["engine"]
    prompts = comment.get("prompts") if isinstance(comment, dict) else None
    if isinstance(prompts, list):
        originals = [p.get("original") or None if isinstance(p, dict) else None for p in prompts]
        if any(originals):
            out["prompts"] = originals
    return out


def settings_from_tags(tags: dict[str, str], filename: str) -> VideoSettings:
    """The composer's settings from a video's container tags (`video_no_studio_settings` when the
    studio wrote none there)."""
    job_id = tags.get("studio_job") or None
    own = _parse(tags.get("studio_settings"))
    if isinstance(own, dict):
        try:
            return VideoSettings(job_id=job_id, source="studio_settings", settings=ComposerSettings.model_validate(own))
        except ValidationError:
            log.warning("a video's studio_settings tag is not what this version reads; trying its parameters")
    params = _parse(tags.get("studio_params"))
    if isinstance(params, dict):
        try:
            rebuilt = ComposerSettings.model_validate(_from_params(params, _parse(tags.get("comment"))))
        except ValidationError:
            rebuilt = None
        if rebuilt is not None:
            return VideoSettings(job_id=job_id, source="studio_params", settings=rebuilt)
    raise StudioError("video_no_studio_settings", filename=filename)
