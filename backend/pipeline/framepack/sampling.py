"""One FramePack transition from loaded parts: the diffusers `__call__` half of the engine.

The sampling loop is the studio's own (`loop.sample_sections`), which computes the same result as
the pipeline's `inverted_anti_drifting` mode (the only one that takes a last image) but streams
each decoded section to the CPU, so VRAM does not grow with video length. Around it:

- an overflow guard: a section whose latents hold inf/NaN is re-run in fp32, with a job warning;
- the fast mode (`magcache.py`): MagCache skips whole forwards by its published calibration;
- per-section image conditioning: the job's start→end SigLIP embedding schedule (strength);
- end-frame influence (`segment["end_influence"]`, 0.05–1): the last image's latent, which anchors
  the clip's end, scaled as FramePack-Studio and eichi scale it; 1.0 leaves it untouched;
- per-section prompts of a timed prompt (`timed_conditioning.py`);
- keyframes inside the transition (`section_keyframes.py`, `segment["keyframes"]`): the section that ends on
  a keyframe's boundary is anchored on its latent and takes its SigLIP embedding;
- progress, cancel and live previews (`pipeline/sampling_progress.py`): every step is reported and
  the callback may raise `JobCancelled`; after every section, all frames so far as uint8
  (sections come out end-first).
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from backend.contracts import messages
from backend.contracts.timed_prompts import parse
from backend.pipeline.framepack import timed_conditioning
from backend.pipeline.framepack.residency import MemoryPlan
from backend.pipeline.sampling_progress import SamplingProgress
from backend.utils.progress import ProgressCallback


def check_bucket(plan: MemoryPlan | None, device: str, height: int, width: int) -> None:
    """Refuses a job larger than the bucket the plan left VRAM for (it would run out)."""
    if device != "cuda" or plan is None or plan.mode == "resident":
        return
    if height * width > plan.bucket * plan.bucket * 1.1:
        raise ValueError(
            messages.bilingual("plan_bucket_exceeded", {"bucket": plan.bucket, "width": width, "height": height})
        )


def step_cache_for(params: dict):
    """The fast mode's MagCache for this job (smart_params labels it so), or None."""
    from backend.pipeline.framepack.magcache import MagCache, parse_cache

    config = parse_cache(params.get("cache", "off"))
    return MagCache(config, int(params["steps"])) if config else None


def _lerp_embeds(embed_a, embed_b, weight: float):
    return (1.0 - weight) * embed_a + weight * embed_b


def sample_transition(
    pipe,
    first: np.ndarray,
    last: np.ndarray,
    prompt: str,
    segment: dict,
    params: dict,
    progress: ProgressCallback,
    *,
    device: str,
    policy=None,
    placement=None,
    step_cache=None,
    overlap_decode: bool = False,
    keyframes=(),
) -> np.ndarray:
    """(n, H, W, 3) uint8 frames from `first` to `last`, n = sections × 4 × window + 1.

    `overlap_decode`: each section is decoded and reported while the next one denoises
    (`loop.sample_sections`); the same frames. `keyframes`: the images of `segment["keyframes"]`,
    in its order."""
    import torch
    from PIL import Image

    from backend.pipeline.framepack.loop import encode, sample_sections

    sections = int(segment["sections"])
    steps = int(params["steps"])
    window = int(params["latent_window_size"])
    height, width = first.shape[:2]
    weights = segment["end_embed_weights"]  # temporal order
    true_cfg = float(params.get("true_cfg", 1.0))
    torch_device = torch.device(device)
    generator = torch.Generator("cpu").manual_seed(int(segment["seed"]))
    report = SamplingProgress(progress, sections, steps)
    # The job layer refused a malformed timed prompt; one that still fails here is a plain prompt.
    try:
        pieces = parse(prompt) or []
    except ValueError:
        pieces = []
    texts = [p.text for p in pieces] or [prompt]
    influence = float(segment.get("end_influence", 1.0))
    # The blocks keep their compiled code: the cache only gates the model's loop.
    attached = step_cache.attached(pipe.transformer) if step_cache else contextlib.nullcontext()
    with torch.no_grad(), attached:
        cond = encode(
            pipe,
            Image.fromarray(first),
            Image.fromarray(last),
            texts[0],
            height,
            width,
            true_cfg,
            generator,
            torch_device,
            placement,
            more_prompts=tuple(texts[1:]),
        )
        if influence != 1.0:  # only g = 0 reads it, as the anchor of the clip's end
            cond = dataclasses.replace(cond, latents_b=cond.latents_b * influence)
        placed = segment.get("keyframes") or []
        if len(placed) != len(keyframes):
            raise ValueError(f"{len(keyframes)} keyframe images for {len(placed)} placed keyframes")
        key_embeds: dict = {}
        if placed:
            from backend.pipeline.framepack.section_keyframes import encode_keyframes

            keys = encode_keyframes(
                pipe,
                keyframes,
                [int(k["point"]) for k in placed],
                sections,
                height=height,
                width=width,
                seed=int(segment["seed"]),
                device=torch_device,
                placement=placement,
            )
            cond = dataclasses.replace(cond, anchors=keys.anchors)
            key_embeds = keys.embeds
        prompt_for = None
        if len(texts) > 1:
            section_seconds = window * pipe.vae_scale_factor_temporal / float(params.get("fps", 30))
            mixes = timed_conditioning.schedule(pieces, sections, section_seconds)
            encoded = [(cond.prompt_embeds, cond.prompt_mask, cond.pooled), *cond.more_prompts]

            def prompt_for(g: int):
                return timed_conditioning.section_prompt(encoded, mixes[max(0, sections - 1 - g)])

        def embeds_for(g: int):
            if g in key_embeds:  # the section that leads into a keyframe sees that image
                return key_embeds[g]
            # Generation is end-first: generated section g is temporal section n-1-g.
            temporal = max(0, sections - 1 - g)
            return _lerp_embeds(cond.embed_a, cond.embed_b, float(weights[min(temporal, len(weights) - 1)]))

        return sample_sections(
            pipe,
            cond,
            height=height,
            width=width,
            sections=sections,
            window=window,
            steps=steps,
            distilled_guidance=float(params["distilled_guidance"]),
            true_cfg=true_cfg,
            generator=generator,
            device=torch_device,
            image_embeds_for=embeds_for,
            on_step=report.step,
            on_section=report.section,
            policy=policy,
            on_warning=report.warning,
            step_cache=step_cache,
            prompt_for=prompt_for,
            overlap_decode=overlap_decode,
        )
