"""Login sessions that logout really ends.

A session is a random id handed out as the cookie value. The server keeps only an HMAC of each id
keyed by the access token, with its expiry, in memory and in a small file in the data folder, so:
- logout removes the id, and the same cookie is refused afterwards even if a copy of it was kept;
- sessions survive a restart (Docker's restart policy, a re-run notebook cell);
- the file holds nothing a client could present, and changing the token ends every session
  (the stored keys no longer match).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MAX_SESSIONS = 1000


class SessionStore:
    def __init__(
        self,
        token: str,
        path: Path | None,
        max_age_s: float,
        clock: Callable[[], float] = time.time,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._token = token.encode()
        self._path = path
        self._max_age_s = max_age_s
        self._clock = clock
        self._max_sessions = max_sessions
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = self._load()

    def _key(self, session_id: str) -> str:
        return hmac.new(self._token, session_id.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()

    def _load(self) -> dict[str, float]:
        if self._path is None:
            return {}
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            now = self._clock()
            return {str(k): float(v) for k, v in raw.get("sessions", {}).items() if float(v) > now}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # A damaged file only means the open pages log in again.
            log.warning("ignoring unreadable session file %s: %s", self._path, exc)
            return {}

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"v": 1, "sessions": self._expiry}, fh)
            os.replace(tmp, self._path)
        except OSError as exc:
            # Sessions still work for this run; a full disk must not break logging in.
            log.warning("could not save sessions to %s: %s", self._path, exc)

    def create(self) -> str:
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._expiry = {k: v for k, v in self._expiry.items() if v > now}
            while len(self._expiry) >= self._max_sessions:
                # Bounded: the session closest to expiring goes first.
                del self._expiry[min(self._expiry, key=self._expiry.__getitem__)]
            self._expiry[self._key(session_id)] = now + self._max_age_s
            self._save()
        return session_id

    def valid(self, session_id: str | None) -> bool:
        if not session_id or len(session_id) > 256:
            return False
        expires = self._expiry.get(self._key(session_id))
        return expires is not None and expires > self._clock()

    def revoke(self, session_id: str | None) -> bool:
        if not session_id or len(session_id) > 256:
            return False
        with self._lock:
            removed = self._expiry.pop(self._key(session_id), None) is not None
            if removed:
                self._save()
        return removed

    def __len__(self) -> int:
        return len(self._expiry)
