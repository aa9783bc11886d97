"""The transition engines a job can use, created once per app and loaded lazily."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.utils.config import Settings
from backend.utils.progress import ProgressCallback


class TransitionEngine(Protocol):
    name: str

    def describe(self) -> dict: ...

    def generate(
        self, first: np.ndarray, last: np.ndarray, prompt: str, segment: dict, params: dict, progress: ProgressCallback
    ) -> np.ndarray: ...

    def release(self) -> None: ...


def runnable(state: dict) -> bool:
    """Whether a job may be given to an engine in this `describe()` state: its weights are here.
    An engine whose last load failed stays runnable (the next job tries again); one that is
    not installed is not."""
    return bool(state.get("installed", state.get("ready")))


def not_ready_reason(state: dict, name: str) -> dict:
    """Why engine `name` cannot run, as a parameter of the `engine_not_ready` sentence: its own
    account in both languages when it gives one, else the catalogue's."""
    en, ko = state.get("reason"), state.get("reason_ko")
    if not (en or ko):
        return messages.message("engine_unavailable", engine=name)
    fallback = messages.texts("engine_unavailable", {"engine": name})
    return {"en": en or fallback["en"], "ko": ko or fallback["ko"]}


class EngineNotReady(StudioError, RuntimeError):
    """The job's engine cannot run here; `engine_not_ready` says why and the fix."""


class Engines:
    def __init__(self, settings: Settings) -> None:
        from backend.pipeline.framepack.engine import FramePackEngine
        from backend.pipeline.morph import MorphEngine
        from backend.pipeline.wan.wan_engine import WanEngine

        self.settings = settings
        self._engines: dict[str, TransitionEngine] = {
            "framepack": FramePackEngine(settings),
            "morph": MorphEngine(),
            "wan": WanEngine(settings),
        }
        self._device: dict | None = None
        self._device_lock = threading.Lock()

    def get(self, name: str) -> TransitionEngine:
        try:
            return self._engines[name]
        except KeyError:
            raise ValueError(f"unknown engine {name!r}") from None

    def device(self) -> dict:
        """Which device PyTorch would use; imports torch, so it is called off the event loop."""
        with self._device_lock:
            if self._device is None:
                from backend.pipeline.framepack.loading import default_resolution, resolve_device

                try:
                    kind, why = resolve_device(self.settings.device)
                    self._device = {
                        "type": kind,
                        "detail": why,
                        "ready": True,
                        "default_resolution": default_resolution(self.settings, kind),
                    }
                except Exception as exc:  # a broken CUDA set-up is reported, not raised
                    self._device = {
                        "type": "none",
                        "detail": str(exc),
                        "ready": False,
                        "default_resolution": default_resolution(self.settings, "cpu"),
                    }
            return dict(self._device)

    def names(self) -> list[str]:
        return list(self._engines)

    def describe(self) -> dict:
        return {name: engine.describe() for name, engine in self._engines.items()}

    def state(self, name: str) -> dict:
        """One engine's `describe()`; reads files only, so the submit path can ask it."""
        return self.get(name).describe()

    def before_job(self, name: str) -> None:
        """Runs on the engine's lane before a job. A job queued before its engine's weights went
        missing (a restart resumes it) fails with the install message, not a loader's error; an
        engine that reads hub ids learns whether the hub answers (one bounded connect,
        remembered), so loading never sits in retries."""
        state = self.state(name)
        if not runnable(state):
            raise EngineNotReady("engine_not_ready", reason=not_ready_reason(state, name))
        if name == "framepack" and not self.settings.framepack_dir:
            from backend.utils.model_registry import settle_hub_mode

            settle_hub_mode(self.settings)

    def default_engine(self) -> str:
        """The configured default while it is ready; otherwise the first engine that is (morph
        needs no weights), so a fresh install makes videos before the 45 GB download is done."""
        preferred = self.settings.default_engine
        if runnable(self.state(preferred)):
            return preferred
        for name in self._engines:
            if name != preferred and runnable(self.state(name)):
                return name
        return preferred

    def describe_postprocess(self) -> dict:
        """Which post-processing weight files are on disk; missing ones download on first use."""
        from backend.utils.model_registry import WEIGHTS, weight_path

        missing = {}
        for name, spec in WEIGHTS.items():
            path = weight_path(name, self.settings)
            if not path.exists():
                how = "downloads on first use" if spec.url else f"place it there by hand ({spec.source_note})"
                missing[name] = f"{path} is missing: {how}"
        return {
            "ready": True,
            "missing": missing,
            "reason": "all weight files present" if not missing else f"{len(missing)} weight file(s) not on disk yet",
        }
