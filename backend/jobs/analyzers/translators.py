"""Translators: one small async interface, and the two real engines behind it.

`prompt_analyzer` only ever talks to `Translator`; which engine stands behind it (the Google web
service through googletrans, a local MarianMT ko→en model, or a test double) is the caller's
choice. Engines raise `TranslationError` (or let network errors through) and never return the
input unchanged as if it were a translation: googletrans does exactly that by default
(`raise_exception=False` hands back the original text), so it is switched off here, otherwise a
dead network would be cached as a "translation".
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class TranslationError(RuntimeError):
    """The engine could not produce a translation (network, model or parse failure)."""


@runtime_checkable
class Translator(Protocol):
    # A stable short name; it keys the translation cache, so results of different engines
    # never stand in for each other.
    name: str

    async def translate(self, text: str, src: str = "ko", dest: str = "en") -> str:
        """Return `text` translated from `src` to `dest`, or raise."""
        ...

    async def aclose(self) -> None:
        """Release connections or models."""
        ...


class GoogleTranslator:
    """googletrans 4 (async API) against translate.googleapis.com.

    `service_url` and `transport` exist so the real client can be pointed somewhere else: tests
    aim it at a closed loopback port or give it an in-process transport, since the internet
    cannot be reached from the test machines.
    """

    name = "google"

    def __init__(
        self,
        timeout_s: float = 8.0,
        service_url: str | None = None,
        transport: Any | None = None,
    ) -> None:
        # Imported here so that importing this module (e.g. for the Protocol) costs nothing.
        import httpx
        from googletrans import Translator as _GoogleTrans

        kwargs: dict[str, Any] = {
            "raise_exception": True,
            "timeout": httpx.Timeout(timeout_s),
            # http2 needs a TLS ALPN round trip that buys nothing for one small GET.
            "http2": False,
        }
        if service_url:
            kwargs["service_urls"] = [service_url]
        self._client = _GoogleTrans(**kwargs)
        if transport is not None:
            self._client.client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout_s))

    async def translate(self, text: str, src: str = "ko", dest: str = "en") -> str:
        try:
            result = await self._client.translate(text, src=src, dest=dest)
        except (asyncio.CancelledError, TranslationError):
            raise
        except Exception as exc:  # httpx errors, bad JSON, changed response format
            raise TranslationError(f"google: {type(exc).__name__}: {exc}") from exc
        out = (getattr(result, "text", "") or "").strip()
        if not out:
            raise TranslationError("google: empty translation")
        return out

    async def aclose(self) -> None:
        await self._client.client.aclose()


class MarianTranslator:
    """A local transformers MarianMT model (e.g. Helsinki-NLP/opus-mt-ko-en saved to a folder).

    Loaded on first use, in a worker thread, and kept; generation also runs in a thread so the
    event loop never blocks on the CPU. It always runs on the CPU: prompts are short and the GPU
    belongs to the video model.
    """

    name = "marian"

    def __init__(self, model_dir: str | Path, max_new_tokens: int = 128) -> None:
        self._dir = Path(model_dir).expanduser()
        self._max_new_tokens = max_new_tokens
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            if not (self._dir / "config.json").is_file():
                raise TranslationError(f"marian: no model at {self._dir}")
            from transformers import MarianMTModel, MarianTokenizer

            tokenizer = MarianTokenizer.from_pretrained(str(self._dir))
            model = MarianMTModel.from_pretrained(str(self._dir))
            model.eval()
            self._tokenizer, self._model = tokenizer, model

    def _translate_sync(self, text: str) -> str:
        import torch

        self._load()
        batch = self._tokenizer([text], return_tensors="pt", truncation=True, max_length=256)
        with torch.inference_mode():
            out = self._model.generate(**batch, max_new_tokens=self._max_new_tokens, num_beams=1)
        return self._tokenizer.decode(out[0], skip_special_tokens=True).strip()

    async def translate(self, text: str, src: str = "ko", dest: str = "en") -> str:
        if (src, dest) != ("ko", "en"):
            raise TranslationError(f"marian: this model only does ko→en, not {src}→{dest}")
        try:
            out = await asyncio.to_thread(self._translate_sync, text)
        except TranslationError:
            raise
        except Exception as exc:
            raise TranslationError(f"marian: {type(exc).__name__}: {exc}") from exc
        if not out:
            raise TranslationError("marian: empty translation")
        return out

    async def aclose(self) -> None:
        self._model = None
        self._tokenizer = None
