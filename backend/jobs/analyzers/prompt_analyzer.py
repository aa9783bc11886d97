"""Korean → English prompts: detection, clause-wise translation with fallbacks, a lasting cache,
and default motion prompts for empty ones.

The video model's text encoder only understands English, so every prompt that holds Hangul is
translated before it is encoded. A translation failure never fails a job: the chain is
primary engine (Google, with a timeout and retries) → optional local engine (MarianMT) →
the original text, and each step down leaves a warning the UI shows.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.contracts import messages
from backend.jobs.analyzers.translators import TranslationError, Translator
from backend.jobs.store import TRANSLATION_CACHE_TABLE

log = logging.getLogger(__name__)

# Hangul syllables, Jamo, compatibility Jamo, Jamo extended A/B and half-width Jamo.
_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff\uffa0-\uffdc]")
# Clause boundaries. Prompts are usually comma-separated phrases; translating clause by clause
# keeps pure-English clauses byte-for-byte (mixed prompts keep their English parts) while a
# Korean clause is still translated whole, with the English words inside it as context.
_CLAUSE_SPLIT = re.compile(r"([,.;!?\n\u3002\uff0c\uff1b\uff01\uff1f\u3001]+\s*)")

# A local model gets longer: its first call loads it from disk.
_LOCAL_TIMEOUT_S = 60.0


def contains_hangul(text: str | None) -> bool:
    return bool(text and _HANGUL.search(text))


def split_clauses(text: str) -> list[tuple[str, str]]:
    """Split into (clause, separator-after-it) pairs; joining them all gives `text` back."""
    parts = _CLAUSE_SPLIT.split(text)
    out: list[tuple[str, str]] = []
    for i in range(0, len(parts), 2):
        clause = parts[i]
        sep = parts[i + 1] if i + 1 < len(parts) else ""
        if clause or sep:
            out.append((clause, sep))
    return out


class TranslationCache:
    """Translations kept in the studio's SQLite file, so the same text is never sent twice,
    across restarts too. Its own table and its own connection (the job store has another)."""

    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, timeout=10.0)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # Also made by the store's migrations; here too, so the cache works on a file of its own.
            self._db.execute(TRANSLATION_CACHE_TABLE)
            self._db.commit()

    def get(self, engine: str, src: str, dest: str, text: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT translation FROM translation_cache WHERE engine=? AND src=? AND dest=? AND text=?",
                (engine, src, dest, text),
            ).fetchone()
        return row[0] if row else None

    def put(self, engine: str, src: str, dest: str, text: str, translation: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO translation_cache VALUES (?, ?, ?, ?, ?, ?)",
                (engine, src, dest, text, translation, time.time()),
            )
            self._db.commit()

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM translation_cache").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass
class TranslationOutcome:
    text: str
    # Engines that produced the text, e.g. ["cache:google"], ["google", "marian"], ["none"].
    engines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class PromptTranslator:
    """Translates the Korean clauses of a prompt through the fallback chain.

    After the primary engine has failed all its retries it is skipped for `cooldown_s`: with no
    internet every clause of every pair would otherwise wait out the full timeout × retries.
    """

    def __init__(
        self,
        primary: Translator | None,
        fallback: Translator | None = None,
        cache: TranslationCache | None = None,
        timeout_s: float = 8.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.cache = cache
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._primary_down_until = 0.0
        self.calls: dict[str, int] = {}  # engine name → real translate() calls; for figures/tests

    async def to_english(self, text: str, src: str = "ko") -> TranslationOutcome:
        if not contains_hangul(text):
            return TranslationOutcome(text=text, engines=[])
        pieces: list[str] = []
        engines: list[str] = []
        failed_primary = False
        untranslated = False
        done: dict[str, str] = {}  # the same clause twice in one prompt costs one call
        for clause, sep in split_clauses(text):
            if not contains_hangul(clause):
                pieces.append(clause + sep)
                continue
            core = clause.strip()
            if core in done:
                out = done[core]
            else:
                translated, engine, primary_failed = await self._translate_clause(core, src)
                failed_primary = failed_primary or primary_failed
                if translated is None:
                    untranslated = True
                    translated = core
                    engine = "none"
                out = translated
                engines.append(engine)
                done[core] = out
            lead = clause[: len(clause) - len(clause.lstrip())]
            trail = clause[len(clause.rstrip()) :]
            # Engines like to close a fragment with a full stop; the separator already decides.
            if sep and out.endswith(".") and not core.endswith("."):
                out = out[:-1]
            pieces.append(lead + out + trail + sep)
        warnings: list[str] = []
        used_local = any(e.endswith("marian") for e in engines)
        if untranslated:
            warnings.append(messages.bilingual("translator_unreachable"))
        elif used_local and failed_primary:
            warnings.append(messages.bilingual("translator_local_used"))
        return TranslationOutcome(text="".join(pieces), engines=engines, warnings=warnings)

    async def _translate_clause(self, text: str, src: str) -> tuple[str | None, str, bool]:
        """(translation or None, engine label, whether the primary engine failed)."""
        primary_failed = False
        for engine in (self.primary, self.fallback):
            if engine is None:
                continue
            cached = await self._cache_get(engine.name, src, text)
            if cached is not None:
                return cached, f"cache:{engine.name}", primary_failed
            is_primary = engine is self.primary
            if is_primary and self._clock() < self._primary_down_until:
                primary_failed = True
                continue
            out = await self._call(engine, text, src, is_primary)
            if out is not None:
                await self._cache_put(engine.name, src, text, out)
                return out, engine.name, primary_failed
            if is_primary:
                primary_failed = True
                self._primary_down_until = self._clock() + self.cooldown_s
        return None, "none", primary_failed

    async def _call(self, engine: Translator, text: str, src: str, is_primary: bool) -> str | None:
        attempts = self.retries + 1 if is_primary else 1
        timeout = self.timeout_s if is_primary else max(self.timeout_s, _LOCAL_TIMEOUT_S)
        for attempt in range(attempts):
            self.calls[engine.name] = self.calls.get(engine.name, 0) + 1
            try:
                out = await asyncio.wait_for(engine.translate(text, src=src, dest="en"), timeout)
                out = (out or "").strip()
                if out:
                    return out
                raise TranslationError("empty translation")
            except asyncio.CancelledError:
                raise
            except (asyncio.TimeoutError, TranslationError, OSError, Exception) as exc:
                log.warning(
                    "translation by %s failed (attempt %d/%d): %s",
                    engine.name,
                    attempt + 1,
                    attempts,
                    exc,
                )
            if attempt + 1 < attempts:
                await asyncio.sleep(self.backoff_s * (2**attempt))
        return None

    async def _cache_get(self, engine: str, src: str, text: str) -> str | None:
        if self.cache is None:
            return None
        try:
            return await asyncio.to_thread(self.cache.get, engine, src, "en", text)
        except sqlite3.Error as exc:  # a broken cache must not break translation
            log.warning("translation cache read failed: %s", exc)
            return None

    async def _cache_put(self, engine: str, src: str, text: str, out: str) -> None:
        if self.cache is None:
            return
        try:
            await asyncio.to_thread(self.cache.put, engine, src, "en", text, out)
        except sqlite3.Error as exc:
            log.warning("translation cache write failed: %s", exc)

    async def aclose(self) -> None:
        for engine in (self.primary, self.fallback):
            if engine is not None:
                try:
                    await engine.aclose()
                except Exception as exc:  # closing must not mask the shutdown path
                    log.warning("closing translator %s failed: %s", engine.name, exc)


@dataclass
class PromptResult:
    original: str | None
    english: str
    warnings: list[str] = field(default_factory=list)
    # "user": the user's text (maybe translated); "default": made from the image analysis.
    source: str = "user"
    engines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


GENERIC_MOTION_PROMPT = (
    "Smooth natural motion, gentle steady camera movement, cinematic lighting, "
    "a seamless transition between the two scenes"
)

_SCENE_PHRASES = {
    "landscape": "a slow cinematic camera pan across the landscape, natural movement of wind and light",
    "cityscape": "a slow camera glide through the city, subtle movement of lights and people",
    "indoor": "a gentle camera move through the room, soft natural light",
    "animal": "the animal moves naturally and calmly, lifelike motion",
    "object": "a slow orbiting camera around the subject, soft studio lighting",
    "artwork": "gentle animated motion in the same art style, smooth flowing movement",
}


def default_motion_prompt(
    tags_a: Mapping[str, Any] | None,
    tags_b: Mapping[str, Any] | None,
    similarity: float | None,
) -> str:
    """A motion prompt for a pair the user left blank, built from the two images' tags.

    Tags are the image analyzer's per-image dict (`person`, `face`, `scene`, `style`); any of
    them may be missing, and with no analysis at all the generic prompt is used.
    """
    if not tags_a and not tags_b:
        return GENERIC_MOTION_PROMPT
    a, b = dict(tags_a or {}), dict(tags_b or {})
    parts: list[str] = []
    if a.get("face") and b.get("face"):
        parts.append("the person's expression and pose change gently, natural head movement, lifelike detail")
    elif a.get("person") or b.get("person"):
        parts.append("the person moves naturally and smoothly, lifelike body motion")
    scene = a.get("scene") or b.get("scene")
    if scene in _SCENE_PHRASES and not (scene == "animal" and parts):
        parts.append(_SCENE_PHRASES[scene])
    if similarity is not None and similarity < 0.6:
        parts.insert(0, "a smooth cinematic transformation from the first scene into the second")
    else:
        parts.append("steady camera, seamless continuous motion")
    if not parts:
        return GENERIC_MOTION_PROMPT
    text = ", ".join(parts)
    return text[0].upper() + text[1:]
