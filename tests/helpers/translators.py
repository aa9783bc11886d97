"""The online translator's stand-in for the prompt and analysis tests (no test reaches the internet)."""

from __future__ import annotations

import asyncio

from backend.jobs.analyzers.translators import TranslationError

KO_EN = {
    "고양이가 창가에서 천천히 걸어간다": "A cat walks slowly by the window",
    "바다 위로 해가 진다": "The sun sets over the sea",
    "빨간 dress를 입은 여자가 웃는다": "A woman in a red dress smiles",
    "고양이": "cat",
}


class DictTranslator:
    """The online translator's stand-in: same interface, answers from a table, counts calls."""

    def __init__(self, name: str = "google", delay_s: float = 0.0, fail: bool = False) -> None:
        self.name = name
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[str] = []
        self.closed = False

    async def translate(self, text: str, src: str = "ko", dest: str = "en") -> str:
        self.calls.append(text)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise TranslationError("unreachable")
        return KO_EN[text]

    async def aclose(self) -> None:
        self.closed = True
