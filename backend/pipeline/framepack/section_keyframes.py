"""Keyframes inside one FramePack transition (`contracts/keyframes.py`): images the motion passes
through at section boundaries, within one generation.

FramePack samples end-first: each section is conditioned on the start image (the clean prefix) and
on the clean latent just after it (the 1x history anchor): the last image for the clip's last
section, the previously generated section's first latent for the others. A keyframe on boundary b
(between temporal sections b - 1 and b) takes that anchor's place for temporal section b - 1, which
is generated section g = sections - b: the section is sampled to lead into the keyframe, while its
2x/4x history still holds the frames after it, so the motion continues on from there. That section
also takes the keyframe's SigLIP embedding as its image embedding (eichi's section images condition
their section the same way). Sections generated before it (temporally after the keyframe) are
untouched, bit for bit: the keyframe is encoded with a generator of its own, so the main generator's
draws (each section's noise) are the same with and without keyframes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class KeyframeConditioning:
    anchors: dict[int, torch.Tensor]  # generated section → VAE latent (float32), the 1x anchor
    embeds: dict[int, torch.Tensor]  # generated section → SigLIP embedding, in the model's dtype


def generated_section(point: int, sections: int) -> int:
    """The generated (end-first) index of the section that ends on boundary `point`."""
    if not 1 <= point < sections:
        raise ValueError(f"a keyframe lands on a boundary between sections: 1..{sections - 1}, not {point}")
    return sections - point


def encode_keyframes(
    pipe,
    images: Sequence[np.ndarray],
    points: Sequence[int],
    sections: int,
    *,
    height: int,
    width: int,
    seed: int,
    device: torch.device,
    placement=None,
) -> KeyframeConditioning:
    """Each keyframe's VAE latent and SigLIP embedding, keyed by the generated section it conditions."""
    from PIL import Image

    if len(images) != len(points):
        raise ValueError(f"{len(images)} keyframe images for {len(points)} placed keyframes")
    targets = [generated_section(int(p), sections) for p in points]
    dtype = pipe.transformer.dtype
    generator = torch.Generator("cpu").manual_seed(int(seed))  # its own: the sections' noise stays the same
    anchors: dict[int, torch.Tensor] = {}
    embeds: dict[int, torch.Tensor] = {}
    if placement is not None:
        placement.encoders_on()
    try:
        for image, g in zip(images, targets):
            pixels = pipe.video_processor.preprocess(Image.fromarray(image), height, width)
            embeds[g] = pipe.encode_image(pixels, device=device).to(dtype)
            anchors[g] = pipe.prepare_image_latents(pixels, dtype=torch.float32, device=device, generator=generator)
    finally:
        if placement is not None:
            placement.encoders_off()
    return KeyframeConditioning(anchors, embeds)
