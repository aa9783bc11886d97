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


class InputMissing(StudioError, FileNotFoundError):
    """A file a job needs is gone (its input image): a missing file to the code that catches
    OSError, a sentence for the person."""


class JobError(StudioError):
    """A job request the queue refuses; its code chooses the HTTP status in the web layer."""
