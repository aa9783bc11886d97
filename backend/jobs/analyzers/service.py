"""The analysis service: what the job queue and `POST /api/analyze` call.

Built once in the app's lifespan. It owns the translation chain and its SQLite cache, and the
OpenCLIP model, which loads lazily on one worker thread: every piece of model work runs on that
thread, so the event loop never blocks and two requests never race for the model. Nothing here
raises for a missing model or an unreachable translator: analysis reports `available: false`
and prompts fall back, with warnings the UI shows.

No caller waits on the model load unless it asks to: the first request starts the load in the
background and is answered at once with `state: "loading"` (sizes-based suggestions only); the
page asks again. Image embeddings are cached per file, so a job submitted after the page's
analysis gets its suggestions without any model work. The worker thread is a daemon: a load
stuck on the network never keeps a stopping server alive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.contracts import messages
from backend.contracts.timed_prompts import MalformedTimedPrompt, TimedPiece, format_timed
from backend.contracts.timed_prompts import parse as parse_timed
from backend.jobs.analyzers import image_analyzer as ia
from backend.jobs.analyzers.prompt_analyzer import (
    PromptResult,
    PromptTranslator,
    TranslationCache,
    default_motion_prompt,
)
from backend.jobs.analyzers.translators import GoogleTranslator, MarianTranslator, Translator
from backend.pipeline.preprocessor import pair_bucket
from backend.utils.config import Settings
from backend.utils.daemon_executor import DaemonExecutor
from backend.utils.images import load_rgb

log = logging.getLogger(__name__)

ClipLoader = Callable[[Settings], "ia.ClipBundle"]

# After a failed load the model is not retried on every request (a missing download would be
# re-attempted by each click); a later request after this pause tries again.
LOAD_RETRY_AFTER_S = 300.0
# How long POST /api/analyze waits for the embeddings of a loaded model (a few images on a CPU
# take well under this); past it the answer says "analysing" and the page asks again.
COMPUTE_WAIT_S = 5.0
EMBEDDING_CACHE_SIZE = 512
LOADING_REASON = messages.bilingual("analysis_loading")
ANALYSING_REASON = messages.bilingual("analysis_busy")
UNAVAILABLE_REASON = messages.bilingual("analysis_unavailable")
# The answer's `reason` as a catalogue code (`reason_code`), so the page says it in its language.
_REASON_CODES: dict[str | None, str] = {
    LOADING_REASON: "analysis_loading",
    ANALYSING_REASON: "analysis_busy",
    UNAVAILABLE_REASON: "analysis_unavailable",
}


class AnalysisService:
    def __init__(
        self,
        settings: Settings,
        translator: Translator | None = None,
        clip_loader: ClipLoader | None = None,
    ) -> None:
        self.settings = settings
        self.cache = TranslationCache(settings.database_path)
        primary = (
            translator
            if translator is not None
            else GoogleTranslator(
                timeout_s=settings.translate_timeout_s,
                service_url=settings.translate_service_url or None,
            )
        )
        fallback = MarianTranslator(settings.marian_ko_en_dir) if settings.marian_ko_en_dir else None
        self.translator = PromptTranslator(
            primary,
            fallback,
            self.cache,
            timeout_s=settings.translate_timeout_s,
            retries=settings.translate_retries,
            cooldown_s=settings.translate_cooldown_s,
        )
        self._clip_loader = clip_loader or ia.load_openclip
        self._executor = DaemonExecutor("analysis")
        self._load_future: concurrent.futures.Future | None = None
        self._load_failed_at = 0.0
        self._embeddings: OrderedDict[tuple, tuple] = OrderedDict()
        self._embeddings_lock = threading.Lock()
        self._pending: dict[tuple, concurrent.futures.Future] = {}
        self._closing_tasks: set[asyncio.Task] = set()

    # --- model --------------------------------------------------------------------------------
    def _load(self) -> ia.ImageAnalyzer:
        from backend.utils.model_registry import settle_hub_mode

        started = time.perf_counter()
        if not self.settings.openclip_model.startswith("local-dir:"):
            unreachable = settle_hub_mode(self.settings)
            if unreachable:
                log.warning("model hub unreachable (%s): OpenCLIP loads from the local cache only", unreachable)
        bundle = self._clip_loader(self.settings)
        log.info("OpenCLIP %s loaded on %s in %.1fs", bundle.name, bundle.device, time.perf_counter() - started)
        return ia.ImageAnalyzer(bundle)

    async def _analyzer(self, wait_s: float) -> tuple[ia.ImageAnalyzer | None, str | None, str | None]:
        """(analyzer, reason, details): the loaded analyzer, or None and why. Starts the load in
        the background when needed and waits for it at most `wait_s` seconds."""
        fut = self._load_future
        if fut is not None and fut.done() and fut.exception() is not None:
            if time.monotonic() - self._load_failed_at < LOAD_RETRY_AFTER_S:
                return None, self._reason(fut.exception()), _details(fut.exception())
            fut = None
        if fut is None:
            fut = self._executor.submit(self._load)
            self._load_future = fut
            fut.add_done_callback(self._note_failure)
        if not fut.done():
            if wait_s <= 0:
                return None, LOADING_REASON, None
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), wait_s)
            except asyncio.TimeoutError:
                return None, LOADING_REASON, None
            except Exception:
                pass
        exc = fut.exception()
        if exc is not None:
            return None, self._reason(exc), _details(exc)
        return fut.result(), None, None

    def _note_failure(self, fut: concurrent.futures.Future) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            self._load_failed_at = time.monotonic()
            log.warning("OpenCLIP could not be loaded: %s", _details(fut.exception()))

    @staticmethod
    def _reason(exc: BaseException | None) -> str:
        # The exception's own text goes to `details` and the log, not to the sentence people read.
        return UNAVAILABLE_REASON

    # --- embeddings ---------------------------------------------------------------------------
    @staticmethod
    def _key(path: Path) -> tuple:
        st = path.stat()
        return (str(path), st.st_mtime_ns, st.st_size)

    def _cached(self, keys: list[tuple]) -> list[tuple] | None:
        with self._embeddings_lock:
            found = [self._embeddings.get(k) for k in keys]
            for k in keys:
                if k in self._embeddings:
                    self._embeddings.move_to_end(k)
        hits = [f for f in found if f is not None]
        return hits if len(hits) == len(found) else None

    def _embed_into_cache(self, analyzer: ia.ImageAnalyzer, paths: list[Path], keys: list[tuple]) -> None:
        todo = [(p, k) for p, k in zip(paths, keys) if self._cached([k]) is None]
        if not todo:
            return
        embeddings, tagged = _embed_and_tag(analyzer, [p for p, _ in todo])
        with self._embeddings_lock:
            for (_, k), e, t in zip(todo, embeddings, tagged):
                self._embeddings[k] = (e, t)
            while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
                self._embeddings.popitem(last=False)

    def _schedule_embedding(self, analyzer, paths: list[Path], keys: list[tuple]) -> concurrent.futures.Future:
        group = tuple(keys)
        fut = self._pending.get(group)
        if fut is None or fut.done():
            fut = self._executor.submit(self._embed_into_cache, analyzer, paths, keys)
            self._pending[group] = fut
            fut.add_done_callback(lambda _f: self._pending.pop(group, None))
        return fut

    # --- analysis -----------------------------------------------------------------------------
    async def analyze(
        self, image_paths: list[Path], load_wait_s: float = 0.0, compute_wait_s: float = COMPUTE_WAIT_S
    ) -> dict[str, Any]:
        """Tags, pair similarities and suggestions, answering within about the two waits.

        `state` is "ready" (from the model), "loading" (the model or the embeddings are not ready
        yet: ask again), or "unavailable" (the model could not be loaded; `details` says why).
        """
        paths = [Path(p) for p in image_paths]
        loop = asyncio.get_running_loop()
        sizes = await loop.run_in_executor(None, _image_sizes, paths)
        analyzer, reason, details = await self._analyzer(load_wait_s)
        state = "unavailable" if details is not None else "loading"
        found = None
        if analyzer is not None:
            keys = await loop.run_in_executor(None, lambda: [self._key(p) for p in paths])
            found = self._cached(keys)
            if found is None:
                fut = self._schedule_embedding(analyzer, paths, keys)
                try:
                    if compute_wait_s > 0:
                        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), compute_wait_s)
                    found = self._cached(keys)
                    if found is None:
                        state, reason = "loading", ANALYSING_REASON
                except asyncio.TimeoutError:
                    state, reason = "loading", ANALYSING_REASON
                except Exception as exc:  # a model failing on one image must not fail the request
                    log.exception("image analysis failed")
                    state, reason, details = "unavailable", self._reason(exc), _details(exc)
        available = found is not None
        result = build_analysis(
            self.settings,
            paths,
            sizes,
            embeddings=[e for e, _ in found] if found is not None else None,
            tagged=[t for _, t in found] if found is not None else None,
        )
        result["available"] = available
        result["state"] = "ready" if available else state
        result["reason"] = None if available else reason
        result["reason_code"] = None if available else _REASON_CODES.get(reason)
        result["details"] = None if available else details
        result["model"] = analyzer.bundle.name if available and analyzer is not None else None
        return result

    # --- prompts ------------------------------------------------------------------------------
    async def english_prompts(
        self, prompts: list[str | None], image_paths: list[Path], analysis_wait_s: float = 0.0
    ) -> list[PromptResult]:
        """One English prompt per pair. Never raises for translation or analysis failures.
        Blank prompts come from the image analysis when it is ready within `analysis_wait_s`."""
        pairs = max(len(image_paths) - 1, len(prompts))
        texts = [(prompts[i] if i < len(prompts) else None) for i in range(pairs)]
        defaults: list[str] = []  # filled when any prompt is blank: only those read it
        if any(not (t or "").strip() for t in texts):
            defaults = await self._default_prompts(image_paths, pairs, analysis_wait_s)
        results: list[PromptResult] = []
        for i, text in enumerate(texts):
            if text is None or not text.strip():
                results.append(PromptResult(original=text or "", english=defaults[i], source="default"))
                continue
            try:
                outcome = await self._to_english(text)
                warnings = [messages.bilingual("pair_note", {"n": i + 1, "text": w}) for w in outcome.warnings]
                results.append(
                    PromptResult(original=text, english=outcome.text, warnings=warnings, engines=outcome.engines)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the last line of "a translation failure never fails a job"
                log.exception("prompt translation failed: %s", _details(exc))
                results.append(
                    PromptResult(
                        original=text,
                        english=text,
                        engines=["none"],
                        warnings=[
                            messages.bilingual(
                                "pair_note", {"n": i + 1, "text": messages.bilingual("translation_failed")}
                            )
                        ],
                    )
                )
        return results

    async def _to_english(self, text: str):
        """A timed prompt is translated piece by piece, so a translator never sees (or mangles) its
        `[1.2s: …]` marks; the form is written back around the English texts."""
        try:
            pieces = parse_timed(text)
        except MalformedTimedPrompt:
            pieces = None  # the job layer refused it; a stored one reads as plain text
        if not pieces:
            return await self.translator.to_english(text)
        outcomes = [await self.translator.to_english(p.text) for p in pieces]
        english = format_timed([TimedPiece(p.at, o.text) for p, o in zip(pieces, outcomes)])
        return dataclasses.replace(
            outcomes[0],
            text=english,
            warnings=[w for o in outcomes for w in o.warnings],
            engines=list(dict.fromkeys(e for o in outcomes for e in o.engines)),
        )

    async def _default_prompts(self, image_paths: list[Path], pairs: int, wait_s: float) -> list[str]:
        try:
            analysis = (
                await self.analyze(image_paths, load_wait_s=wait_s, compute_wait_s=wait_s)
                if len(image_paths) >= 2
                else None
            )
        except Exception:
            log.exception("analysis for default prompts failed")
            analysis = None
        if analysis is None:
            return [default_motion_prompt(None, None, None)] * pairs
        return [
            analysis["default_prompts"][i]
            if i < len(analysis["default_prompts"])
            else default_motion_prompt(None, None, None)
            for i in range(pairs)
        ]

    # --- shutdown -----------------------------------------------------------------------------
    async def aclose(self) -> None:
        await self.translator.aclose()
        self.close()

    def close(self) -> None:
        """Synchronous part of shutdown; `aclose` also closes the translators' connections.
        Safe to call twice."""
        self._executor.shutdown(wait=False, cancel_futures=True)  # a daemon: never waited for
        try:
            self.cache.close()
        except Exception as exc:
            log.warning("closing the translation cache failed: %s", exc)


def _details(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = str(exc).strip()
    text = text if len(text) < 1000 else text[:1000] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _image_sizes(paths: list[Path]) -> list[tuple[int, int]]:
    """Sizes as the engines will see them (EXIF orientation applied)."""
    from PIL import Image

    sizes = []
    for p in paths:
        with Image.open(p) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):  # rotated by 90°: the upright image is transposed
                w, h = h, w
            sizes.append((w, h))
    return sizes


def _embed_and_tag(analyzer: ia.ImageAnalyzer, paths: list[Path]):
    embeddings = analyzer.embed_paths(paths, load_rgb)
    tagged = [analyzer.tags(e) for e in embeddings]
    return embeddings, tagged


def _reason(field: str, code: str, params: dict | None = None, pair: int | None = None, image: int | None = None):
    said = messages.texts(code, params)
    return {
        "field": field,
        "pair": pair,
        "image": image,
        "en": said["en"],
        "ko": said["ko"],
        "code": code,
        "params": params or {},
    }


def build_analysis(
    settings: Settings,
    paths: list[Path],
    sizes: list[tuple[int, int]],
    embeddings=None,
    tagged=None,
) -> dict[str, Any]:
    """The analyze() answer from sizes and (when the model is there) embeddings and tags."""
    reasons: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    resolution = ia.suggest_resolution(sizes) if sizes else 640
    if sizes and resolution < 640:
        reasons.append(_reason("resolution", "suggest_resolution", {"resolution": resolution}))
    bucket = pair_bucket(sizes, resolution) if sizes else (resolution, resolution)
    losses = [ia.crop_loss(w, h, bucket) for w, h in sizes]
    fit, fit_why = ia.suggest_fit(losses, settings.fit_mode)
    for i, (p, (w, h)) in enumerate(zip(paths, sizes)):
        entry: dict[str, Any] = {
            "index": i,
            "id": p.stem,
            "width": w,
            "height": h,
            "aspect": round(w / h, 4),
            "fit_loss": round(losses[i], 4),
            "tags": None,
            "scores": None,
        }
        if tagged is not None:
            entry["tags"], entry["scores"] = tagged[i]
        images.append(entry)
    if fit_why == "pad_large_loss":
        worst = max(range(len(losses)), key=losses.__getitem__)
        reasons.append(
            _reason(
                "fit",
                "suggest_fit_pad",
                {"image": worst + 1, "frame": f"{bucket[0]}x{bucket[1]}", "loss": f"{losses[worst]:.0%}"},
                image=worst,
            )
        )
    elif fit_why == "crop_same_aspect":
        reasons.append(_reason("fit", "suggest_fit_same"))
    for i in range(len(sizes) - 1):
        a, b = sizes[i][0] / sizes[i][1], sizes[i + 1][0] / sizes[i + 1][1]
        if max(a, b) / min(a, b) > 1.05:
            reasons.append(
                _reason(
                    "fit",
                    "suggest_fit_crop" if fit == "crop" else "suggest_fit_padded",
                    {"a": i + 1, "b": i + 2, "frame": f"{bucket[0]}x{bucket[1]}"},
                    pair=i,
                )
            )

    pairs: list[dict[str, Any]] = []
    suggestion_pairs: list[dict[str, Any]] = []
    default_prompts: list[str] = []
    for i in range(len(sizes) - 1):
        if embeddings is None:
            pairs.append({"index": i, "similarity": None, "difference": None})
            suggestion_pairs.append({"seconds": None, "strength": None})
            default_prompts.append(default_motion_prompt(None, None, None))
            continue
        sim = ia.cosine(embeddings[i], embeddings[i + 1])
        diff = ia.pair_difference(sim)
        pairs.append({"index": i, "similarity": round(sim, 4), "difference": round(diff, 4)})
        s = ia.suggest_pair(sim, settings.max_seconds_per_transition)
        suggestion_pairs.append(s)
        tags_a, tags_b = tagged[i][0], tagged[i + 1][0]
        default_prompts.append(default_motion_prompt(tags_a, tags_b, sim))
        code = (
            "suggest_pair_different"
            if diff >= 0.66
            else "suggest_pair_similar"
            if diff <= 0.33
            else "suggest_pair_moderate"
        )
        reasons.append(
            _reason(
                "seconds",
                code,
                {
                    "a": i + 1,
                    "b": i + 2,
                    "similarity": f"{sim:.2f}",
                    "seconds": str(s["seconds"]),
                    "strength": s["strength"],
                },
                pair=i,
            )
        )
    return {
        "images": images,
        "pairs": pairs,
        "suggestions": {
            "pairs": suggestion_pairs,
            "resolution": resolution,
            "bucket": [bucket[0], bucket[1]],
            "fit": fit,
            "reasons": reasons,
        },
        "default_prompts": default_prompts,
    }
