"""The studio's domain error: a catalogue code and its parameters, never an HTTP status.

Services (the queue, uploads, storage, analysis, the access checks) raise it; the web layer
chooses the status for the code (`backend.web.error_responses`) and answers in both languages. Each
service keeps its own subclass so callers can catch what they expect, but all of them are
answered the same way.
"""

from __future__ import annotations

from typing import Any

from backend.contracts import messages


class StudioError(Exception):
    def __init__(self, code: str, /, *, extra: dict[str, Any] | None = None, **params: Any) -> None:
        if code not in messages.CATALOGUE:
            raise KeyError(f"no message for error code {code!r}")
        self.code = code
        self.params = params
        # More fields of the JSON answer that are data, not text (the engine, its fix command).
        self.extra = extra or {}
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """Both languages in one text: the answer's `detail`, the log, a stored job's error."""
        return messages.bilingual(self.code, self.params)

    def text(self, lang: str) -> str:
        return messages.render(self.code, lang, self.params)

    def __reduce__(self):
        # Pickled (to cross from a Ray worker) as its code and parameters: the default would call
        # the class with the message as its code. A subclass's own fields travel as its state.
        state = {k: v for k, v in self.__dict__.items() if k not in ("code", "params", "extra")}
        return (_rebuild, (type(self), self.code, self.params, self.extra), state)


def as_param(exc: BaseException) -> Any:
    """`exc` as a parameter of another sentence (the cause in "… could not be downloaded ({error})"):
    its own message when it has a code, so each language shows its own text; else its text."""
    if isinstance(exc, StudioError):
        return messages.message(exc.code, **exc.params)
    return str(exc)


def _rebuild(cls: type[StudioError], code: str, params: dict[str, Any], extra: dict[str, Any]) -> StudioError:
    # The subclass's __init__ may take other arguments (a stage and a cause); the code says it all.
    error = cls.__new__(cls)
    StudioError.__init__(error, code, extra=extra, **params)
    return error


class InputMissing(StudioError, FileNotFoundError):
    """A file a job needs is gone (its input image): a missing file to the code that catches
    OSError, a sentence for the person."""


class JobError(StudioError):
    """A job request the queue refuses; its code chooses the HTTP status in the web layer."""
