"""Which prompt conditions each FramePack section of a timed prompt (`[0s: …] [1.2s: …]`).

A section is sampled under one conditioning, so a prompt can only change at a section start. A
hard switch there leaves the model one section to turn the motion around; instead the first
section of a new prompt is conditioned on an even mix of the previous prompt and the new one (text
embeddings and pooled vector averaged, attention mask the union of both), and the sections after
it on the new prompt alone. The blend spans one section (1.2 s) — FramePack-Studio's "sections to
blend" at 1 — short enough that each prompt still owns the sections it names. A single prompt is
never mixed, so its conditioning is the plain prompt's, bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.contracts.timed_prompts import TimedPiece, section_of

if TYPE_CHECKING:  # torch loads with the engine, never when the job layer imports the engine's modules
    import torch

Prompt = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]  # (embeds, mask, pooled)
Mix = list[tuple[int, float]]  # (index of a prompt, its weight), weights summing to 1


def schedule(pieces: list[TimedPiece], sections: int, section_seconds: float) -> list[Mix]:
    """One mix per temporal section (start → end). Times past the last section clamp to it (the
    job layer refuses them; a stored plan keeps working)."""
    starts = [min(section_of(p.at, section_seconds), sections - 1) for p in pieces]
    mixes: list[Mix] = []
    for k in range(sections):
        active = [j for j, s in enumerate(starts) if s <= k]
        j = active[-1] if active else 0
        if j > 0 and starts[j] == k and starts[j - 1] < k:
            mixes.append([(j - 1, 0.5), (j, 0.5)])
        else:
            mixes.append([(j, 1.0)])
    return mixes


def section_prompt(prompts: list[Prompt], mix: Mix) -> Prompt:
    """The conditioning of one section: a prompt as encoded, or the weighted mix of two."""
    import torch

    if len(mix) == 1:
        return prompts[mix[0][0]]
    shapes = {prompts[j][0].shape for j, _ in mix}
    if len(shapes) > 1:  # differently padded encodings cannot be averaged: switch at once
        return prompts[mix[-1][0]]
    embeds = sum(w * prompts[j][0] for j, w in mix)
    pooled = sum(w * prompts[j][2] for j, w in mix)
    mask = torch.stack([prompts[j][1] for j, _ in mix]).amax(dim=0)
    return embeds, mask, pooled  # type: ignore[return-value]
