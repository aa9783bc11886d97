"""Request bodies of the API, validated once at the edge."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Engine = Literal["framepack", "morph"]
# A ceiling that no configuration of STUDIO_MAX_IMAGES_PER_JOB reaches, so validation stops at the
# count instead of checking every id of a huge list; the configured limit is checked by the route.
MAX_IMAGES_ANY_JOB = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobSettings(_Strict):
    """The user's sliders. `None` means "not set": a suggestion or the default fills it in."""

    seconds: float | None = Field(None, gt=0, le=120, description="seconds per transition")
    quality: int | None = Field(None, ge=0, le=100)
    strength: int | None = Field(None, ge=0, le=100)
    resolution: int | None = Field(None, ge=32, le=1536, description="bucket edge in px")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)


class PostprocessOptions(_Strict):
    mode: Literal["off", "auto", "manual"] = "off"
    face_restore: bool = False
    upscale: Literal[1, 2, 4] = 1
    interpolate: Literal[1, 2, 4] = 1
    upscale_model: Literal["realesrgan-x4plus", "realesrgan-x2plus", "realesr-animevideov3"] = (
        "realesrgan-x4plus"
    )
    codeformer_fidelity: float | None = Field(None, ge=0, le=1)


class JobCreate(_Strict):
    images: list[str] = Field(..., min_length=2, max_length=MAX_IMAGES_ANY_JOB)
    prompt: str | None = Field(None, max_length=2000)
    prompts: list[str | None] | None = Field(None, max_length=MAX_IMAGES_ANY_JOB)
    engine: Engine | None = None
    settings: JobSettings = Field(default_factory=JobSettings)
    postprocess: PostprocessOptions = Field(default_factory=PostprocessOptions)

    @model_validator(mode="after")
    def _one_prompt_per_pair(self) -> "JobCreate":
        pairs = len(self.images) - 1
        if self.prompts is not None and len(self.prompts) != pairs:
            raise ValueError(
                f"'prompts' needs one entry per pair: {pairs} for {len(self.images)} images, "
                f"got {len(self.prompts)}"
            )
        for text in self.prompts or []:
            if text is not None and len(text) > 2000:
                raise ValueError("each prompt must be at most 2000 characters")
        return self

    def pair_prompts(self) -> list[str | None]:
        """The prompt of each pair: its own, else the global one."""
        own = self.prompts or [None] * (len(self.images) - 1)
        return [(p if p and p.strip() else self.prompt) for p in own]


class ParamsPreview(_Strict):
    images: list[str] | None = Field(None, max_length=MAX_IMAGES_ANY_JOB)
    settings: JobSettings = Field(default_factory=JobSettings)
    engine: Engine | None = None
