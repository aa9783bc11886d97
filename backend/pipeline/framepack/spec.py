"""The FramePack engine's declared facts (`contracts/engines.EngineSpec`). No torch: the web and job
layers read it to resolve parameters and to show the licence, long before the model loads."""

from __future__ import annotations

from backend.contracts.engine_specs import EngineSpec, FrameRule, Licence, MemoryNeed, SliderEffect

# FramePack's sections are generated at the model's native 30 fps, one latent window of 9 latent
# frames (4 pixel frames each) per section, and a transition ends on its last image: + 1 frame.
NATIVE_FPS = 30
LATENT_WINDOW = 9
FRAMES_PER_SECTION = LATENT_WINDOW * 4
# The fast mode below DRAFT_QUALITY_BELOW: MagCache with the faster of the two settings its authors
# published for FramePack (threshold 0.15, at most 4 skips in a row, first 20% of steps kept),
# 2.25x on FramePack at 25 steps. Its skips follow from the calibration alone
# (`framepack/magcache.py`): at the slider's 8-13 steps it skips 2-6 of each section's forwards.
DRAFT_QUALITY_BELOW = 30
DRAFT_CACHE = "magcache:0.15:4:0.2"
# FramePack's default is 25 steps; 8 is the fewest that still resolve the two images.
STEPS_SPAN = (8.0, 25.0)

FRAMES = FrameRule(block=FRAMES_PER_SECTION, min_blocks=1, max_blocks=None)

SPEC = EngineSpec(
    name="framepack",
    label="engine_label_framepack",
    # The transformer (lllyasviel/FramePackI2V_HY) is a fine-tune of HunyuanVideo, and the text
    # encoders and VAE are HunyuanVideo's own: the Tencent Hunyuan Community License's text is the
    # one that names where it does not apply (the LICENSE of the HunyuanVideo model card).
    licence=Licence(
        name="licence_name_hunyuan",
        url="https://huggingface.co/tencent/HunyuanVideo/blob/main/LICENSE",
        excluded=("EU", "GB", "KR"),
        note="licence_note_framepack",
    ),
    # README "Pointing the studio at the real models": about 45 GB (transformer 24 GiB, the 8B text
    # encoder about 16 GB, VAE, CLIP-L, SigLIP), plus 16 GB of scratch in offload mode.
    disk_gb=45,
    # README's GPU table (its measured rows, full 8B text encoder): the smallest machine of each
    # plan. Resident: the A100 40 GB row (all 60 blocks on the GPU), where host RAM is "any"
    # (the process takes about 3.3 GiB). Partial: the 8 GB row (5 of 60 blocks on the GPU, 7.69 GiB
    # reserved, 9.9 GiB peak RSS). Offload: the 6 GB laptop row (no block on the GPU at 640,
    # 5.68 GiB reserved, 9.9 GiB peak RSS).
    memory=(
        MemoryNeed(plan="resident", vram_gb=40, ram_gb=3.5),
        MemoryNeed(plan="partial", vram_gb=8, ram_gb=16),
        MemoryNeed(plan="offload", vram_gb=6, ram_gb=16),
    ),
    native_fps=NATIVE_FPS,
    frames=FRAMES,
    sliders=(
        SliderEffect(
            slider="seconds",
            param="sections",
            rule=f"max(1, round(seconds × {NATIVE_FPS} / {FRAMES_PER_SECTION})); frames = sections × "
            f"{FRAMES_PER_SECTION} + 1",
            span=None,
        ),
        SliderEffect(slider="quality", param="steps", rule="round(8 + 17 × q / 100)", span=STEPS_SPAN),
        SliderEffect(
            slider="quality", param="cache", rule=f"q < {DRAFT_QUALITY_BELOW}: {DRAFT_CACHE}; else off", span=None
        ),
        SliderEffect(
            slider="strength",
            param="end_embed_weights",
            rule="w(p) = 0.5 + (p − 0.5) × s / 100 at each section's centre p",
            span=None,
        ),
    ),
)
