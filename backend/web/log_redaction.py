"""Keeps the access token out of uvicorn's log lines.

A WebSocket carries the token as `?token=` (browsers cannot set headers on WebSockets), and uvicorn
logs request lines with their query string. `backend.utils.redact` is a different job: it hides
server paths from what clients see.
"""

from __future__ import annotations

import logging
import re

_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)
# uvicorn writes HTTP request lines to uvicorn.access and WebSocket handshakes to uvicorn.error.
REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn")


def redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Rewrites `?token=...` in a log record's message and arguments (the WebSocket query token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) and "token=" in a.lower() else a for a in record.args)
        return True


def install_log_redaction() -> None:
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
