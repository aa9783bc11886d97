"""What the studio knows about the Wan engine's models (Wan 2.1 FLF2V 14B, Wan 2.2 I2V A14B; the
server's STUDIO_WAN_MODEL picks one, `utils/model_registry.WAN_MODELS` holds their hub facts), and how
the sliders map onto them. No torch here: the job layer reads this module when it resolves a job's
parameters. Both models share the frame rule (16 fps, 4k+1 ≤ 81) and the step mapping; the full
mode's guidance is each model's own default (5.0 for 2.1, 3.5 for 2.2, used for both of 2.2's stages).

| slider | Wan parameter | rule |
|---|---|---|
| seconds | frames | nearest 4k+1 to seconds × 16, at least 5, at most 81 (one call, 5.06 s); more is capped and the take says so |
| quality ≥ 30 | steps, guidance | round(20 + 20 × (q − 30) / 70): 20 … 40 steps; guidance: the model's default |
| quality < 30 | fast mode | the LightX2V 4-step step/CFG-distillation LoRA(s): 4 steps, guidance 1.0 (one forward per step); Wan 2.2 has one LoRA per expert |
| strength | — | unused: Wan conditions on both end frames by latent concatenation, it has no weight to turn |
| resolution | bucket | the studio's bucket (edges × 16 = VAE 8 × patch 2); frames come back at the bucket's size |
"""

from __future__ import annotations

from backend.contracts.engine_specs import EngineSpec, FrameRule, Licence, MemoryNeed, SliderEffect
from backend.utils.model_registry import (
    DEFAULT_WAN_MODEL,
    WAN21,
    WAN22,
    WAN_LORA_FILE,
    WAN_LORA_REPO,
    WAN_MODELS,
    WAN_REPO,
)

NAME = "wan"
LICENCE = "Apache-2.0"
REPO = WAN_REPO  # diffusers layout, WanImageToVideoPipeline; hub facts in utils/model_registry.py
LORA_REPO, LORA_FILE = WAN_LORA_REPO, WAN_LORA_FILE

# The pipeline's parts, each a folder of the diffusers-layout repo (model_index.json names them).
COMPONENTS = WAN21.components
NATIVE_FPS = 16
TEMPORAL_STRIDE = 4  # the VAE's temporal compression: frame counts are 4k+1
MIN_FRAMES = 5
MAX_FRAMES = 81  # one call's window, the model's trained length (5.06 s at 16 fps)
SPATIAL_MULTIPLE = 16  # VAE 8 × patch 2
FULL_STEPS = 40
MIN_FULL_STEPS = 20
GUIDANCE = WAN21.guidance  # Wan 2.1's; `guidance_for` gives each model's
FAST_BELOW = 30  # quality under this picks the fast mode (the studio's draft threshold)
FAST_STEPS = 4
FAST_GUIDANCE = 1.0


def frames_for(seconds: float) -> int:
    """The 4k+1 frame count nearest to `seconds` at 16 fps, within one call's window."""
    return max(MIN_FRAMES, min(MAX_FRAMES, _nearest(seconds)))


def _nearest(seconds: float) -> int:
    return round((seconds * NATIVE_FPS - 1) / TEMPORAL_STRIDE) * TEMPORAL_STRIDE + 1


def is_frame_count(frames: int) -> bool:
    return frames >= 1 and (frames - 1) % TEMPORAL_STRIDE == 0


def capped(seconds: float) -> bool:
    """Whether `seconds` asks for more than one call makes (the take is then 81 frames)."""
    return _nearest(seconds) > MAX_FRAMES


def steps_for(quality: int) -> int:
    if quality < FAST_BELOW:
        return FAST_STEPS
    return int(round(MIN_FULL_STEPS + (FULL_STEPS - MIN_FULL_STEPS) * (quality - FAST_BELOW) / (100 - FAST_BELOW)))


def guidance_for(model: str) -> float:
    return WAN_MODELS[model].guidance


def adapt_params(params: dict, seconds: list[float], model: str = DEFAULT_WAN_MODEL) -> dict:
    """A job's resolved parameters (`jobs/params.resolve`'s FramePack-shaped dict) made Wan's:
    frames per transition, 16 fps (every file of the job carries the engine's rate), steps,
    guidance and the fast mode, for `model` (the server's STUDIO_WAN_MODEL, recorded in the
    params). `seconds` are the asked seconds per transition."""
    quality = int(params["quality"])
    fast = quality < FAST_BELOW
    segments = []
    for seg, asked in zip(params["segments"], seconds):
        frames = frames_for(asked)
        seg = {k: v for k, v in seg.items() if k not in ("end_embed_weights", "end_influence")}
        # One call makes the transition: one "section" for the job layer, which weights each
        # transition's share of the progress bar and names previews by sections.
        seg.update(
            sections=1, frames=frames, seconds=round(frames / NATIVE_FPS, 3), asked_seconds=asked, capped=capped(asked)
        )
        segments.append(seg)
    total = sum(s["frames"] for s in segments) - (len(segments) - 1) - (1 if params.get("loop") else 0)
    out = {k: v for k, v in params.items() if k not in ("latent_window_size", "distilled_guidance", "true_cfg")}
    out.update(
        engine=NAME,
        fps=NATIVE_FPS,
        steps=steps_for(quality),
        wan_model=model,
        guidance=FAST_GUIDANCE if fast else guidance_for(model),
        fast=fast,
        draft=fast,
        cache="lightx2v-4step" if fast else "off",
        sampling_type="wan_flf2v",
        segments=segments,
        total_frames=total,
        total_seconds=round(total / NATIVE_FPS, 3),
    )
    return out


SPEC = EngineSpec(
    name=NAME,
    label="engine_label_wan",
    licence=Licence(
        name="licence_name_apache",
        url=f"https://huggingface.co/{WAN_REPO}",
        excluded=(),
        note="licence_note_wan",
    ),
    # The repo's parts: the 14B transformer, UMT5-XXL text encoder, CLIP ViT-H image encoder, VAE.
    # Estimated from the parameter counts (not read off the hub's listing, which this machine cannot
    # reach): about 80 GB, plus the 4-step LoRA (739 MB).
    disk_gb=80,
    # The placement rule of wan_loading.placement_for: resident from 64 GiB, the model-level CPU
    # offload from 40 GiB, group offloading with streams below. RAM: every weight lives pinned in
    # host RAM under the group offload (measured on an H100: 68 GiB peak RSS, 9.2 GiB VRAM reserved,
    # 1.05-1.09x resident's step, benchmarks/README.md); with less RAM than the model's
    # `pinned_ram_min_gib` the transformer's and UMT5's layers stream from files on disk instead
    # (`group_offload_disk`, int8 under auto: ~23 GB of files beside the models; CLIP and the VAE stay
    # pinned, ~3 GB; measured only with bf16 files and UMT5 pinned, under a 32 GiB cap: 11.5x).
    # Wan 2.2 I2V A14B (STUDIO_WAN_MODEL=wan2.2-i2v-a14b) has two 14B experts: both bf16 experts
    # (2 × 28.6 GB) + UMT5-XXL resident need ~70 GB of weights, so resident starts at 96 GiB; the
    # model-level offload keeps one expert on the GPU at a time (the same 40 GiB), and host RAM holds
    # both (~70 GB + the rest). Estimates from the parameter counts, not measured.
    memory=(
        MemoryNeed(plan="resident", vram_gb=64, ram_gb=48),
        MemoryNeed(plan="model_offload", vram_gb=40, ram_gb=64),
        MemoryNeed(plan="group_offload", vram_gb=16, ram_gb=80),
        MemoryNeed(plan="group_offload_disk", vram_gb=16, ram_gb=32),
        MemoryNeed(plan=f"{WAN22.key} resident", vram_gb=WAN22.resident_min_gib, ram_gb=80),
        MemoryNeed(plan=f"{WAN22.key} model_offload", vram_gb=40, ram_gb=96),
        MemoryNeed(plan=f"{WAN22.key} group_offload", vram_gb=24, ram_gb=96),
    ),
    native_fps=NATIVE_FPS,
    frames=FrameRule(block=TEMPORAL_STRIDE, min_blocks=1, max_blocks=(MAX_FRAMES - 1) // TEMPORAL_STRIDE),
    sliders=(
        SliderEffect(
            slider="seconds",
            param="frames",
            rule=f"nearest 4k+1 to seconds × {NATIVE_FPS}, {MIN_FRAMES}…{MAX_FRAMES} (longer is capped)",
            span=None,
        ),
        SliderEffect(
            slider="quality",
            param="steps",
            rule=f"q < {FAST_BELOW}: {FAST_STEPS} (fast mode, 4-step LoRA); else round({MIN_FULL_STEPS} + "
            f"{FULL_STEPS - MIN_FULL_STEPS} × (q − {FAST_BELOW}) / {100 - FAST_BELOW})",
            span=None,
        ),
        SliderEffect(
            slider="quality",
            param="guidance",
            rule=f"q < {FAST_BELOW}: {FAST_GUIDANCE}; else {WAN21.guidance} (Wan 2.1), {WAN22.guidance} (Wan 2.2)",
            span=None,
        ),
    ),
)
