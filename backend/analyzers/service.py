"""The analysis service: what the job queue and `POST /api/analyze` call.

Built once in the app's lifespan. It owns the translation chain and its SQLite cache, and the
OpenCLIP model, which loads lazily on one worker thread: every piece of model work runs on that
thread, so the event loop never blocks and two requests never race for the model. Nothing here
raises for a missing model or an unreachable translator: analysis reports `available: false`
and prompts fall back, with warnings the UI shows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from pathlib import Path
from typing import Any, Callable

from backend.analyzers import image_analyzer as ia
from backend.analyzers.prompt_analyzer import (
    PromptResult,
    PromptTranslator,
    TranslationCache,
    default_motion_prompt,
)
from backend.analyzers.translators import GoogleTranslator, MarianTranslator, Translator
from backend.config import Settings
from backend.pipeline.preprocessor import load_rgb, pair_bucket

log = logging.getLogger(__name__)

ClipLoader = Callable[[Settings], "ia.ClipBundle"]

# After a failed load the model is not retried on every request (a missing download would be
# re-attempted by each click); a later request after this pause tries again.
LOAD_RETRY_AFTER_S = 300.0


class AnalysisService:
    def __init__(
        self,
        settings: Settings,
        translator: Translator | None = None,
        clip_loader: ClipLoader | None = None,
    ) -> None:
        self.settings = settings
        self.cache = TranslationCache(settings.database_path)
        primary = translator if translator is not None else GoogleTranslator(
            timeout_s=settings.translate_timeout_s,
            service_url=settings.translate_service_url or None,
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
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="analysis"
        )
        self._load_future: concurrent.futures.Future | None = None
        self._load_failed_at = 0.0
        self._closing_tasks: set[asyncio.Task] = set()

    # --- model --------------------------------------------------------------------------------
    def _load(self) -> ia.ImageAnalyzer:
        started = time.perf_counter()
        bundle = self._clip_loader(self.settings)
        log.info("OpenCLIP %s loaded on %s in %.1fs", bundle.name, bundle.device,
                 time.perf_counter() - started)
        return ia.ImageAnalyzer(bundle)

    async def _analyzer(self) -> tuple[ia.ImageAnalyzer | None, str | None]:
        """The loaded analyzer, or (None, reason). Waits at most `analysis_load_timeout_s`."""
        fut = self._load_future
        if fut is not None and fut.done() and fut.exception() is not None:
            if time.monotonic() - self._load_failed_at < LOAD_RETRY_AFTER_S:
                return None, self._reason(fut.exception())
            fut = None
        if fut is None:
            fut = self._executor.submit(self._load)
            self._load_future = fut
        try:
            analyzer = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(fut)), self.settings.analysis_load_timeout_s
            )
            return analyzer, None
        except asyncio.TimeoutError:
            return None, (
                "The image analysis model is still loading; try again shortly. / "
                "이미지 분석 모델을 불러오는 중입니다. 잠시 후 다시 시도하세요."
            )
        except Exception as exc:
            self._load_failed_at = time.monotonic()
            log.warning("OpenCLIP could not be loaded: %s", exc)
            return None, self._reason(exc)

    @staticmethod
    def _reason(exc: BaseException | None) -> str:
        detail = f"{type(exc).__name__}: {exc}" if exc else "unknown error"
        return (
            f"Image analysis is unavailable (the OpenCLIP model could not be loaded: {detail}). / "
            "이미지 분석을 사용할 수 없습니다 (OpenCLIP 모델을 불러오지 못했습니다)."
        )

    # --- analysis -----------------------------------------------------------------------------
    async def analyze(self, image_paths: list[Path]) -> dict[str, Any]:
        """Tags, pair similarities and suggestions; see docs in the report / README."""
        paths = [Path(p) for p in image_paths]
        loop = asyncio.get_running_loop()
        sizes = await loop.run_in_executor(None, _image_sizes, paths)
        analyzer, reason = await self._analyzer()
        embeddings = tagged = None
        if analyzer is not None:
            try:
                embeddings, tagged = await loop.run_in_executor(
                    self._executor, _embed_and_tag, analyzer, paths
                )
            except Exception as exc:  # a model failing on one image must not fail the request
                log.exception("image analysis failed")
                analyzer, reason = None, self._reason(exc)
        result = build_analysis(
            self.settings, paths, sizes,
            embeddings=embeddings if analyzer is not None else None,
            tagged=tagged if analyzer is not None else None,
        )
        result["available"] = analyzer is not None
        result["reason"] = reason
        result["model"] = analyzer.bundle.name if analyzer is not None else None
        return result

    # --- prompts ------------------------------------------------------------------------------
    async def english_prompts(
        self, prompts: list[str | None], image_paths: list[Path]
    ) -> list[PromptResult]:
        """One English prompt per pair. Never raises for translation or analysis failures."""
        pairs = max(len(image_paths) - 1, len(prompts))
        texts = [(prompts[i] if i < len(prompts) else None) for i in range(pairs)]
        defaults: list[str] | None = None
        if any(not (t or "").strip() for t in texts):
            defaults = await self._default_prompts(image_paths, pairs)
        results: list[PromptResult] = []
        for i, text in enumerate(texts):
            if not (text or "").strip():
                results.append(PromptResult(original=text or "", english=defaults[i], source="default"))
                continue
            try:
                outcome = await self.translator.to_english(text)
                warnings = [f"Pair {i + 1} / 구간 {i + 1}: {w}" for w in outcome.warnings]
                results.append(PromptResult(original=text, english=outcome.text,
                                            warnings=warnings, engines=outcome.engines))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the last line of "a translation failure never fails a job"
                log.exception("prompt translation failed")
                results.append(PromptResult(
                    original=text, english=text, engines=["none"],
                    warnings=[f"Pair {i + 1} / 구간 {i + 1}: translation failed ({exc}); the "
                              "prompt was used as written. / 번역에 실패하여 프롬프트를 그대로 "
                              "사용했습니다."],
                ))
        return results

    async def _default_prompts(self, image_paths: list[Path], pairs: int) -> list[str]:
        try:
            analysis = await self.analyze(image_paths) if len(image_paths) >= 2 else None
        except Exception:
            log.exception("analysis for default prompts failed")
            analysis = None
        if analysis is None:
            return [default_motion_prompt(None, None, None)] * pairs
        return [
            analysis["default_prompts"][i] if i < len(analysis["default_prompts"])
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
        self._executor.shutdown(wait=False, cancel_futures=True)
        try:
            self.cache.close()
        except Exception as exc:
            log.warning("closing the translation cache failed: %s", exc)


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


def _reason(field: str, en: str, ko: str, pair: int | None = None, image: int | None = None):
    return {"field": field, "pair": pair, "image": image, "en": en, "ko": ko}


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
        reasons.append(_reason(
            "resolution",
            f"The smallest image has about {resolution}² pixels; a larger bucket would only "
            "upscale it.",
            f"가장 작은 이미지가 약 {resolution}² 픽셀이라 더 큰 해상도는 확대만 됩니다.",
        ))
    bucket = pair_bucket(sizes, resolution) if sizes else (resolution, resolution)
    losses = [ia.crop_loss(w, h, bucket) for w, h in sizes]
    fit, fit_why = ia.suggest_fit(losses, settings.fit_mode)
    for i, (p, (w, h)) in enumerate(zip(paths, sizes)):
        entry: dict[str, Any] = {
            "index": i, "id": p.stem, "width": w, "height": h,
            "aspect": round(w / h, 4), "fit_loss": round(losses[i], 4),
            "tags": None, "scores": None,
        }
        if tagged is not None:
            entry["tags"], entry["scores"] = tagged[i]
        images.append(entry)
    if fit_why == "pad_large_loss":
        worst = max(range(len(losses)), key=losses.__getitem__)
        reasons.append(_reason(
            "fit",
            f"Cropping image {worst + 1} to the {bucket[0]}x{bucket[1]} frame would cut off "
            f"{losses[worst]:.0%} of it, so it is padded instead.",
            f"이미지 {worst + 1}을(를) {bucket[0]}x{bucket[1]} 화면에 맞춰 자르면 "
            f"{losses[worst]:.0%}가 잘리므로 여백을 넣어 맞춥니다.",
            image=worst,
        ))
    elif fit_why == "crop_same_aspect":
        reasons.append(_reason(
            "fit", "All images have nearly the frame's aspect ratio; cropping loses almost nothing.",
            "모든 이미지의 화면비가 거의 같아 잘라도 손실이 거의 없습니다.",
        ))
    for i in range(len(sizes) - 1):
        a, b = sizes[i][0] / sizes[i][1], sizes[i + 1][0] / sizes[i + 1][1]
        if max(a, b) / min(a, b) > 1.05:
            reasons.append(_reason(
                "fit",
                f"Images {i + 1} and {i + 2} have different aspect ratios; both are fitted to "
                f"{bucket[0]}x{bucket[1]} by {fit}.",
                f"이미지 {i + 1}과 {i + 2}의 화면비가 달라 둘 다 {bucket[0]}x{bucket[1]}에 "
                f"{'잘라서' if fit == 'crop' else '여백을 넣어'} 맞춥니다.",
                pair=i,
            ))

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
        if diff >= 0.66:
            en = (f"Images {i + 1} and {i + 2} are very different (similarity {sim:.2f}): a longer "
                  f"transition ({s['seconds']} s) with more strength ({s['strength']}).")
            ko = (f"이미지 {i + 1}과 {i + 2}이(가) 많이 다릅니다 (유사도 {sim:.2f}): 더 긴 전환 "
                  f"({s['seconds']}초)과 더 높은 강도({s['strength']})를 권장합니다.")
        elif diff <= 0.33:
            en = (f"Images {i + 1} and {i + 2} are similar (similarity {sim:.2f}): a short "
                  f"transition ({s['seconds']} s) with gentle strength ({s['strength']}).")
            ko = (f"이미지 {i + 1}과 {i + 2}이(가) 비슷합니다 (유사도 {sim:.2f}): 짧은 전환 "
                  f"({s['seconds']}초)과 약한 강도({s['strength']})를 권장합니다.")
        else:
            en = (f"Images {i + 1} and {i + 2} are moderately different (similarity {sim:.2f}): "
                  f"{s['seconds']} s, strength {s['strength']}.")
            ko = (f"이미지 {i + 1}과 {i + 2}이(가) 어느 정도 다릅니다 (유사도 {sim:.2f}): "
                  f"{s['seconds']}초, 강도 {s['strength']}.")
        reasons.append(_reason("seconds", en, ko, pair=i))
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
