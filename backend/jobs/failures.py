"""What a person reads when a job fails: an exception becomes a catalogue code and parameters.

Errors that already speak to a person (a domain error with its code) are shown as they are; a file
or database problem names the file and the cause in plain words; anything else is an internal error,
shown as such, never as an exception's text or repr.
"""

from __future__ import annotations

import sqlite3

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.jobs.cluster.task import RemoteError


def _first_line(text: str, limit: int = 300) -> str:
    line = (text.strip().splitlines() or [""])[0].strip()
    return line if len(line) <= limit else line[:limit] + "…"


def user_error(exc: BaseException, stage: str | None = None) -> tuple[str, str, dict]:
    """(the sentence the page shows in both languages, the technical details kept in the job and
    the log, the same sentence as a catalogue message `{"code", "params"}`).

    Errors that already speak to a person (a missing model file, a refused request) are shown as
    they are; a file or database problem names the file and the cause in plain words; anything
    else is an internal error, shown as such, never as an exception's text or repr."""
    kind = exc.kind if isinstance(exc, RemoteError) else type(exc).__name__
    details = f"{kind}: {readable(exc)}"
    code, params = failure(exc, stage)
    return messages.bilingual(code, params), details, messages.message(code, **params)


def failure(exc: BaseException, stage: str | None) -> tuple[str, dict]:
    where = f" ({stage})" if stage and stage not in ("queued", "running") else ""
    if isinstance(exc, StudioError):
        return exc.code, exc.params
    # A worker's coded error that could not cross as itself still carries its code.
    if isinstance(exc, RemoteError) and exc.code is not None and exc.code in messages.CATALOGUE:
        return exc.code, exc.params
    kinds = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, RemoteError):
        kinds |= set(exc.remote_kinds)
    if isinstance(exc, sqlite3.Error):
        return "job_failed_db", {"cause": _first_line(str(exc)) or "database error"}
    if isinstance(exc, OSError):
        cause = exc.strerror or _first_line(str(exc)) or "input/output error"
        target = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return "job_failed_file", {"where": where, "cause": cause, "target": target}
    if "OutOfMemoryError" in kinds:
        return "job_failed_oom", {}
    return "job_failed_internal", {"where": where}


def readable(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text if len(text) < 2000 else text[:2000] + "…"
