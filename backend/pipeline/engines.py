"""The transition engines a job can use: declared in `REGISTRY`, created on first use, loaded lazily.

An engine is its spec (`contracts/engines.EngineSpec`: licence, needs, frame rule, slider mapping)
and an object behind `TransitionEngine`. The registry holds the spec and a factory that imports the
engine's module only when the engine is first asked for, so one engine never needs another's code
or weights to load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from backend.contracts import messages
from backend.contracts.engine_specs import EngineSpec
from backend.contracts.errors import StudioError
from backend.pipeline.framepack.spec import SPEC as FRAMEPACK_SPEC
from backend.pipeline.morph import SPEC as MORPH_SPEC
from backend.pipeline.wan.wan_spec import SPEC as WAN_SPEC
from backend.utils.config import Settings
from backend.utils.progress import ProgressCallback


class TransitionEngine(Protocol):
    """describe() reads files only (its readiness, for /api/health and the submit path);
    generate() loads the engine on first use and reports each step through `progress` — a
    `Progress` record per step, with a section's frames as a preview where the engine has them —
    and cancelling raises from that callback, so a cancel lands within one step; release() frees
    what the engine holds."""

    name: str
    spec: EngineSpec

    def describe(self) -> dict: ...

    def generate(
        self,
        first: np.ndarray,
        last: np.ndarray,
        prompt: str,
        segment: dict,
        params: dict,
        progress: ProgressCallback,
        keyframes: Sequence[np.ndarray] = (),
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


@dataclass(frozen=True)
class Registered:
    spec: EngineSpec
    make: Callable[[Settings], TransitionEngine]


def _framepack(settings: Settings) -> TransitionEngine:
    from backend.pipeline.framepack.engine import FramePackEngine

    return FramePackEngine(settings)


def _wan(settings: Settings) -> TransitionEngine:
    from backend.pipeline.wan.wan_engine import WanEngine

    return WanEngine(settings)


def _morph(settings: Settings) -> TransitionEngine:
    from backend.pipeline.morph import MorphEngine

    return MorphEngine()


# Every engine this studio has, in the order the page and /api/health list them.
REGISTRY: dict[str, Registered] = {
    r.spec.name: r
    for r in (Registered(FRAMEPACK_SPEC, _framepack), Registered(WAN_SPEC, _wan), Registered(MORPH_SPEC, _morph))
}


def engine_spec(name: str) -> EngineSpec:
    try:
        return REGISTRY[name].spec
    except KeyError:
        raise ValueError(f"unknown engine {name!r}") from None


class Engines:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, TransitionEngine] = {}  # made on first use, then kept
        self._engines_lock = threading.Lock()
        self._device: dict | None = None
        self._device_lock = threading.Lock()

    def get(self, name: str) -> TransitionEngine:
        registered = REGISTRY.get(name)
        if registered is None:
            raise ValueError(f"unknown engine {name!r}")
        with self._engines_lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = self._engines[name] = registered.make(self.settings)
            return engine

    def spec(self, name: str) -> EngineSpec:
        """The engine's spec; Wan's licence links the model page of the configured model."""
        found = engine_spec(name)
        if name == "wan":
            from backend.utils.model_registry import wan_model

            url = f"https://huggingface.co/{wan_model(self.settings).repo}"
            found = found.model_copy(update={"licence": found.licence.model_copy(update={"url": url})})
        return found

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
        return list(REGISTRY)

    def specs(self) -> dict[str, EngineSpec]:
        return {name: registered.spec for name, registered in REGISTRY.items()}

    def describe(self) -> dict:
        return {name: self.get(name).describe() for name in REGISTRY}

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
        for name in REGISTRY:
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
