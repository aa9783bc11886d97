"""Three friendly sliders → FramePack's parameters. The README's smart-parameter table is this file.

| slider | FramePack parameter | rule |
|---|---|---|
| seconds (per transition) | sections | max(1, round(seconds × 30 / (4 × window))); window = 9 → 1.2 s steps |
| quality 0–100 | steps | round(8 + 17 × q / 100): 8 … 25 (FramePack's default 25 at 100) |
| quality | cache | q < 30: MagCache (threshold 0.15, K 4, retention 0.2) — the fast mode, which trades quality for speed, labelled so in the UI |
| quality | CRF | round(28 − 12 × q / 100): 28 … 16 (FramePack's default 16 at 100) |
| strength 0–100 | end-image embedding weight per section | w(p) = 0.5 + (p − 0.5) × s / 100 at section centre p |
| end influence 0.05–1 | the end image's anchor latent × influence | 1.0 (default) is today's output exactly |
| resolution | bucket (W, H) | about resolution² pixels at the images' mean aspect ratio, edges × 16 |
| — | distilled guidance 10, true CFG 1 (one forward per step) | FramePack's defaults |
| seed | seed of pair i = seed + i | a random seed is drawn when none is given, and stored |
| loop | one more pair, last image → first | the joined video drops its last frame (the first image again), so a player's wrap repeats no frame |

Strength 0 reproduces diffusers' constant 50/50 average of the two SigLIP embeddings; strength 100
moves the image conditioning linearly from the start image to the end image over the transition,
which pulls the clip toward the next image as it nears the end (the end-frame adherence users ask for).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from backend.contracts.engine_specs import EngineSpec, SliderEffect
from backend.contracts.models import JobSettings
from backend.pipeline.engines import engine_spec
from backend.pipeline.framepack.spec import DRAFT_CACHE, DRAFT_QUALITY_BELOW, LATENT_WINDOW
from backend.pipeline.framepack.spec import SPEC as FRAMEPACK
from backend.pipeline.preprocessor import pair_bucket

# The one frame rate of every file a job writes (previews, segments, the joined video): FramePack's
# sections are generated at the model's native 30 fps, so another rate would only replay the same
# frames faster or slower. Higher rates come from interpolation, which multiplies this one.
FPS = FRAMEPACK.native_fps
DEFAULTS: dict[str, float] = {"seconds": 2.4, "quality": 70, "strength": 50, "resolution": 640}
# The studio's own mapping, the same for every engine: the mp4 encoder's CRF (FramePack's default
# 16 at quality 100).
CRF = SliderEffect(slider="quality", param="crf", rule="round(28 − 12 × q / 100)", span=(28.0, 16.0))


@dataclass(frozen=True)
class Suggestions:
    """Per-job defaults from image analysis; the user's explicit values always win."""

    seconds: list[float] | None = None  # one per pair
    strength: list[int] | None = None  # one per pair
    resolution: int | None = None
    fit: str | None = None


def sections_for(seconds: float, spec: EngineSpec = FRAMEPACK) -> int:
    return spec.frames.blocks_for(seconds, spec.native_fps)


def frames_for(sections: int, spec: EngineSpec = FRAMEPACK) -> int:
    return spec.frames.frames(sections)


def steps_for(quality: int) -> int:
    return FRAMEPACK.slider("quality", "steps").at(quality)


def crf_for(quality: int) -> int:
    return CRF.at(quality)


def slider_mapping(engine: str) -> list[SliderEffect]:
    """What each slider sets for `engine` (its spec's mapping, then the studio's own), for /api/params."""
    return [*engine_spec(engine).sliders, CRF]


def end_embed_weights(sections: int, strength: int) -> list[float]:
    """Weight of the end image's embedding for each section, in temporal order (start → end)."""
    weights = []
    for k in range(sections):
        centre = (k + 0.5) / sections
        weights.append(round(0.5 + (centre - 0.5) * strength / 100, 4))
    return weights


def resolve(
    settings: JobSettings,
    pairs: int,
    image_sizes: list[tuple[int, int]] | None = None,
    suggestions: Suggestions | None = None,
    fit: str = "crop",
    engine: str = "framepack",
    loop: bool = False,
    wan_model: str | None = None,
) -> dict:
    """The exact engine parameters of a job, JSON-able, stored with the job and shown in the UI.
    Lengths follow the engine's frame rule at its native rate; the sampling parameters are
    FramePack's for every engine (morph ignores them), as every stored job has them."""
    s = suggestions or Suggestions()
    spec = engine_spec(engine)

    def per_pair(explicit, suggested, default):
        if explicit is not None:
            return [explicit] * pairs
        if suggested is not None and len(suggested) == pairs:
            return list(suggested)
        return [default] * pairs

    seconds = per_pair(settings.seconds, s.seconds, DEFAULTS["seconds"])
    strength = per_pair(settings.strength, s.strength, DEFAULTS["strength"])
    quality = settings.quality if settings.quality is not None else int(DEFAULTS["quality"])
    resolution = settings.resolution or s.resolution or int(DEFAULTS["resolution"])
    fit = s.fit if (s.fit and settings.resolution is None) else fit
    seed = settings.seed if settings.seed is not None else random.randrange(2**31)
    width, height = pair_bucket(image_sizes or [(1, 1)], resolution)
    draft = quality < DRAFT_QUALITY_BELOW
    end_influence = settings.end_influence if settings.end_influence is not None else 1.0

    segments: list[dict[str, Any]] = []
    for i in range(pairs):
        sections = sections_for(seconds[i], spec)
        frames = frames_for(sections, spec)
        segments.append(
            {
                "pair": i,
                "seconds": round(frames / spec.native_fps, 3),
                "sections": sections,
                "frames": frames,
                "strength": int(strength[i]),
                "end_embed_weights": end_embed_weights(sections, int(strength[i])),
                "end_influence": end_influence,
                "seed": seed + i,
            }
        )
    # Shared keyframes are written once; a loop's last frame is the first image again, dropped.
    total_frames = sum(seg["frames"] for seg in segments) - (pairs - 1) - (1 if loop else 0)
    resolved = {
        "engine": engine,
        "loop": bool(loop),
        "quality": quality,
        "resolution": resolution,
        "width": width,
        "height": height,
        "fit": fit,
        "fps": spec.native_fps,
        "latent_window_size": LATENT_WINDOW,
        "steps": steps_for(quality),
        "distilled_guidance": 10.0,
        "true_cfg": 1.0,
        "sampling_type": "inverted_anti_drifting",
        "cache": DRAFT_CACHE if draft else "off",
        "draft": draft,
        "crf": crf_for(quality),
        "seed": seed,
        "segments": segments,
        "total_frames": total_frames,
        "total_seconds": round(total_frames / spec.native_fps, 3),
    }
    if engine == "wan":  # its own frame rule, 16 fps, steps and fast mode (pipeline/wan/wan_spec.py)
        from backend.pipeline.wan.wan_spec import adapt_params
        from backend.utils.model_registry import DEFAULT_WAN_MODEL

        return adapt_params(resolved, [float(x) for x in seconds], wan_model or DEFAULT_WAN_MODEL)
    return resolved


def retake(
    engine: str, transition: dict, seconds: float | None, strength: int | None, end_influence: float | None = None
) -> dict:
    """One transition's planned parameters for a new take of it: its length, strength and end-frame
    influence changed where asked, by the engine's own frame rule (a re-roll of a Wan transition
    stays 4k+1 frames)."""
    seg = dict(transition)
    if end_influence is not None:
        seg["end_influence"] = end_influence
    if engine == "wan":
        from backend.pipeline.wan.wan_spec import NATIVE_FPS, capped
        from backend.pipeline.wan.wan_spec import frames_for as wan_frames

        if seconds is not None:
            frames = wan_frames(seconds)
            seg.update(
                frames=frames, seconds=round(frames / NATIVE_FPS, 3), asked_seconds=seconds, capped=capped(seconds)
            )
        if strength is not None:
            seg["strength"] = strength
        return seg
    spec = engine_spec(engine)
    if seconds is not None:
        sections = sections_for(seconds, spec)
        frames = frames_for(sections, spec)
        seg.update(sections=sections, frames=frames, seconds=round(frames / spec.native_fps, 3))
    if strength is not None:
        seg["strength"] = strength
    seg["end_embed_weights"] = end_embed_weights(seg["sections"], int(seg["strength"]))
    return seg
