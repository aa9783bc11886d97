"""Prompts over time: one transition's prompt written as `[0s: a cat sits] [1.2s: the cat jumps]`.

The form is FramePack-Studio's timestamped prompt, start times only. It is read in one place, here,
so the job layer (which refuses a malformed one and shows each prompt's section) and the engine
(which conditions each section on its prompt) cannot disagree. Times snap to the nearest section
start: a section is the engine's unit of conditioning, so a finer time could not be honoured.

A text is timed when it begins with `[` and a number; any other text is a plain prompt, so a plain
prompt that merely contains brackets ("a cat [smiling]") stays plain.
No imports from the rest of the studio besides the catalogue: every layer may use it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

EXAMPLE = "[0s: a cat sits] [1.2s: the cat jumps]"

_STARTS_TIMED = re.compile(r"^\s*\[\s*\d")
_PIECE = re.compile(r"\s*\[\s*(\d+(?:\.\d+)?)\s*s\s*:\s*([^\[\]]*?)\s*\]\s*")


@dataclass(frozen=True)
class TimedPiece:
    at: float  # seconds from the transition's start, as written
    text: str


class MalformedTimedPrompt(ValueError):
    """The text starts like a timed prompt but is not one; the caller names the pair."""


def is_timed(text: str | None) -> bool:
    return bool(text) and bool(_STARTS_TIMED.match(text or ""))


def parse(text: str | None) -> list[TimedPiece] | None:
    """The pieces of a timed prompt in time order, or None for a plain prompt."""
    if not is_timed(text):
        return None
    assert text is not None
    pieces: list[TimedPiece] = []
    pos = 0
    while pos < len(text):
        match = _PIECE.match(text, pos)
        if match is None or match.end() == pos:
            raise MalformedTimedPrompt(text)
        if not match.group(2):
            raise MalformedTimedPrompt(text)  # an empty prompt at a time says nothing
        pieces.append(TimedPiece(float(match.group(1)), match.group(2)))
        pos = match.end()
    return sorted(pieces, key=lambda p: p.at)


def format_timed(pieces: list[TimedPiece]) -> str:
    """The form back from pieces (after each piece's text is translated)."""
    return " ".join(f"[{_num(p.at)}s: {p.text}]" for p in pieces)


def section_of(at: float, section_seconds: float) -> int:
    """The section a start time snaps to: the nearest section start (halves round up, not to even)."""
    return int(math.floor(at / section_seconds + 0.5 + 1e-9))


def _num(x: float) -> str:
    return f"{x:g}"
