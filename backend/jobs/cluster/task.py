"""The contract between the job runner and whatever makes its transitions."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from backend.contracts.errors import StudioError
from backend.utils.progress import ProgressCallback


@dataclass
class CancelToken:
    """Set by the queue; read by the progress callback. `reason` tells cancel from shutdown.

    Listeners hear the set at once: a Ray worker busy in a denoising step is told to stop without
    waiting for its next progress report to come back here."""

    event: threading.Event = field(default_factory=threading.Event)
    reason: str = "cancel"
    _listeners: list[Callable[[str], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            self.event.set()
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(reason)
            except Exception:  # a listener that fails must not keep the others from hearing it
                pass

    def listen(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Calls `listener(reason)` when the token is set (now, if it already is); returns the
        function that stops listening."""
        with self._lock:
            already = self.event.is_set()
            if not already:
                self._listeners.append(listener)
        if already:
            listener(self.reason)

        def stop() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return stop

    def child(self) -> CancelToken:
        """A token set when this one is, and settable on its own (to stop one job's other
        transitions when one of them fails, without cancelling the job)."""
        child = CancelToken()
        self.listen(child.set)
        return child


class RemoteError(RuntimeError):
    """An error raised on a worker that cannot cross to the studio as itself (its class does not
    pickle back): its message and the names of its classes, for the job's details and the log.
    When it was a `StudioError`, `code` and `params` are its catalogue sentence (else `code` is
    None), so the studio shows that sentence without knowing the class."""

    def __init__(
        self, kind: str, kinds: tuple[str, ...], text: str, code: str | None = None, params: dict | None = None
    ) -> None:
        super().__init__(text)
        self.kind, self.remote_kinds = kind, tuple(kinds)
        self.code, self.params = code, dict(params or {})

    def __reduce__(self):
        return (RemoteError, (self.kind, self.remote_kinds, str(self), self.code, self.params))

    @classmethod
    def carrying(cls, exc: BaseException) -> BaseException:
        """`exc` itself when it pickles back whole, else a RemoteError that says the same."""
        try:
            back = pickle.loads(pickle.dumps(exc))
            if type(back) is type(exc) and str(back) == str(exc):
                return exc
        except Exception:
            pass
        kinds = tuple(c.__name__ for c in type(exc).__mro__)
        if isinstance(exc, StudioError):
            return cls(type(exc).__name__, kinds, str(exc), exc.code, _picklable(exc.params))
        return cls(type(exc).__name__, kinds, str(exc))


def _picklable(params: dict[str, Any]) -> dict[str, Any]:
    # A parameter that cannot cross (an object of the worker's) crosses as its text.
    out = {}
    for name, value in params.items():
        try:
            pickle.dumps(value)
            out[name] = value
        except Exception:
            out[name] = str(value)
    return out


@dataclass(frozen=True)
class TransitionTask:
    """One take of one transition, everything a worker needs to make its frames."""

    job_id: str
    created_at: float  # the job's: the pool serves the oldest job first
    index: int  # 0-based transition
    take: int
    engine: str
    first: np.ndarray
    last: np.ndarray
    prompt: str
    segment: dict
    params: dict
    # The keyframe images inside the transition, in the order of `segment["keyframes"]`.
    keyframes: tuple[np.ndarray, ...] = ()

    @property
    def key(self) -> str:
        """Names the take everywhere (logs, a worker's cancel, the store's row)."""
        return f"{self.job_id}/{self.index}/{self.take}"

    @property
    def order(self) -> tuple:
        return take_order(self.created_at, self.job_id, self.index, self.take)


def take_order(created_at: float, job_id: str, index: int, take: int) -> tuple:
    """A take's place in the workers' line: the oldest job first, then the lowest transition and
    take. One formula for a task's own order and for the orders a job announces in `admit`."""
    return (created_at, job_id, index, take)


class Workers(Protocol):
    """Makes takes and runs post-processing. `parallel` is how many takes of one job may be in
    flight at once (1: the runner makes them one after another, as the embedded studio does).
    `order` places a job's post-processing in the workers' line: (created_at, job_id, ...), after
    its own takes."""

    @property
    def parallel(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def view(self) -> dict:
        """What /monitor shows of them: {"mode", "address", "error", "workers": [...]}."""
        ...

    def before_job(self, engine: str) -> None: ...

    def admit(self, job_id: str, created_at: float, takes: Sequence[tuple[int, int]], token: CancelToken) -> None:
        """Puts every (transition, take) of a job that is about to be made at once in the workers'
        line together, before any of them can be handed a worker: the threads that make them reach
        `generate` one by one, and a take of a later job must not slip in between. A take that
        reaches `generate` uses its place; the places of those that never do are given up when
        `token` is set (the runner sets it when any take fails or the job is cancelled)."""
        ...

    def generate(self, task: TransitionTask, report: ProgressCallback, token: CancelToken) -> np.ndarray: ...

    def postprocess(
        self,
        order: tuple,
        src: Path,
        dst: Path,
        options: dict,
        report: ProgressCallback,
        token: CancelToken,
        crf: int,
        metadata: dict,
    ) -> dict: ...
