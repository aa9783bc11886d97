"""What an engine declares about itself: name, licence, needs, frame rule and slider mapping.

Each engine module declares one `EngineSpec` (`pipeline/framepack/spec.py`, `pipeline/morph.py`);
`pipeline/engines.REGISTRY` lists them beside a factory that builds the engine only when a job or
/api/health first asks for it. The spec is plain data, so it crosses to the web layer and the page
as it is: `/api/meta` lists every engine's, `/api/health` each engine's licence, `/api/params` the
slider mapping of the job's engine. Texts a person reads are catalogue codes
(`contracts/messages.py`), shown in the page's language.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Slider = Literal["seconds", "quality", "strength"]


class _Spec(BaseModel):
    # Frozen: a spec is a module-level constant shared by every request and thread.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Licence(_Spec):
    """The licence an engine's weights (or code) come under, as the page and the README show it."""

    name: str = Field(description="catalogue code of the licence's name")
    url: str | None = Field(description="the licence text; none when the engine ships no weights")
    excluded: tuple[str, ...] = Field(
        description="where the licence text says it does not apply (EU, GB, KR); empty: nowhere"
    )
    note: str | None = Field(description="catalogue code of the note shown beside the name (the territory note)")


class MemoryNeed(_Spec):
    """The smallest machine one memory plan of the engine runs on."""

    plan: str = Field(description="the memory plan (FramePack: resident, partial, offload)")
    vram_gb: float = Field(description="GPU memory of the smallest card the plan runs on")
    ram_gb: float = Field(description="host RAM of that machine")


class FrameRule(_Spec):
    """The frame counts an engine makes: `block × n + 1` frames for n blocks, min_blocks ≤ n ≤ max_blocks.

    FramePack: a section of 36 frames (4 × latent window 9); a Wan-style model: one latent frame
    of 4 (4k + 1 frames, at most 81); an engine that makes any count: block 1.
    """

    block: int = Field(ge=1, description="frames one block adds")
    min_blocks: int = Field(ge=1)
    max_blocks: int | None = Field(description="the model's longest window, in blocks; none: no limit")

    def blocks_for(self, seconds: float, fps: int) -> int:
        """The blocks nearest to `seconds` at `fps`, within the engine's limits."""
        blocks = max(self.min_blocks, round(seconds * fps / self.block))
        return blocks if self.max_blocks is None else min(blocks, self.max_blocks)

    def frames(self, blocks: int) -> int:
        return blocks * self.block + 1

    def accepts(self, frames: int) -> bool:
        blocks, rest = divmod(frames - 1, self.block)
        return rest == 0 and blocks >= self.min_blocks and (self.max_blocks is None or blocks <= self.max_blocks)


class SliderEffect(_Spec):
    """One engine parameter a slider sets. `span` is its value at the slider's 0 and 100 when it
    moves linearly between them (rounded to an integer); `rule` is the mapping as a formula."""

    slider: Slider
    param: str
    rule: str
    span: tuple[float, float] | None = Field(description="(value at 0, value at 100) of a linear mapping")

    def at(self, value: float) -> int:
        """The parameter at slider `value` (0–100), for a linear mapping."""
        if self.span is None:
            raise ValueError(f"{self.slider} → {self.param} is not linear")
        low, high = self.span
        return int(round(low + (high - low) * value / 100))


class EngineSpec(_Spec):
    """One engine as a small declared thing; every field is required, so a new engine states all."""

    name: str
    label: str = Field(description="catalogue code of the engine's name on the page")
    licence: Licence
    disk_gb: float = Field(description="disk its weights take once downloaded; 0: none")
    memory: tuple[MemoryNeed, ...] = Field(description="per memory plan; empty: runs on the CPU, no GPU needed")
    native_fps: int = Field(description="the rate its frames are made for, and the rate of the files a job writes")
    frames: FrameRule
    sliders: tuple[SliderEffect, ...]

    def slider(self, slider: Slider, param: str) -> SliderEffect:
        for effect in self.sliders:
            if effect.slider == slider and effect.param == param:
                return effect
        raise KeyError(f"{self.name}: no {slider} → {param} mapping")
