"""Request bodies of the API, validated once at the edge, and the shapes of its answers.

The answer models document the routes in /openapi.json (`responses=`); routes return plain dicts,
so a field a newer view adds is sent as it is, and the models allow extra fields for that reason.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from typing_extensions import Annotated

Engine = Literal["framepack", "morph"]
# The largest seed a browser holds exactly (JavaScript numbers are doubles); larger ones would
# come back changed, and JSON Schema checkers compare them as doubles too.
MAX_SEED = 2**53 - 1


def _not_bool(value):
    # Pydantic reads true/false as 1/0; the schema says "number", so they are refused.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


Num = BeforeValidator(_not_bool)
# A ceiling that no configuration of STUDIO_MAX_IMAGES_PER_JOB reaches, so validation stops at the
# count instead of checking every id of a huge list; the configured limit is checked by the route.
MAX_IMAGES_ANY_JOB = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobSettings(_Strict):
    """The user's sliders. `None` means "not set": a suggestion or the default fills it in."""

    # allow_inf_nan=False: NaN would otherwise fail "<= 120" and be reported as too large.
    seconds: Annotated[float | None, Num] = Field(None, gt=0, le=120, allow_inf_nan=False,
                                                  description="seconds per transition")
    quality: Annotated[int | None, Num] = Field(None, ge=0, le=100)
    strength: Annotated[int | None, Num] = Field(None, ge=0, le=100)
    resolution: Annotated[int | None, Num] = Field(None, ge=32, le=1536, description="bucket edge in px")
    seed: Annotated[int | None, Num] = Field(None, ge=0, le=MAX_SEED)


class PostprocessOptions(_Strict):
    mode: Literal["off", "auto", "manual"] = "off"
    face_restore: bool = Field(False, strict=True)
    upscale: Annotated[Literal[1, 2, 4], Num] = 1
    interpolate: Annotated[Literal[1, 2, 4], Num] = 1
    upscale_model: Literal["realesrgan-x4plus", "realesrgan-x2plus", "realesr-animevideov3"] = (
        "realesrgan-x4plus"
    )
    codeformer_fidelity: Annotated[float | None, Num] = Field(None, ge=0, le=1, allow_inf_nan=False)


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


# --- answers ----------------------------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """Every error the studio answers: one sentence, in English and Korean (`detail`), and the
    same sentence as a code of backend.messages with its parameters, which the page renders in
    its own language. Some errors add data fields (engine_not_ready: `engine`, `missing`, `fix`)."""

    model_config = ConfigDict(extra="allow")

    detail: str
    code: str
    params: dict[str, Any] = {}


class UploadView(_Open):
    id: str
    width: int
    height: int
    url: str
    filename: str


class UploadList(_Open):
    uploads: list[UploadView]


class ParamsView(_Open):
    params: dict[str, Any]
    segments: int


class JobCreated(_Open):
    id: str
    status: str


class JobImage(_Open):
    id: str
    url: str
    width: int | None = None
    height: int | None = None


class SegmentView(_Open):
    index: int
    status: str
    progress: float
    frames: int | None = None
    video_url: str | None = None


class JobView(_Open):
    id: str
    status: str
    progress: float
    stage: str | None = None
    error: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    engine: str | None = None
    images: list[JobImage] = []
    prompts: list[Any] = []
    settings: dict[str, Any] | None = None
    postprocess: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    segments: list[SegmentView] = []
    current: dict[str, Any] | None = None
    preview_url: str | None = None
    video_url: str | None = None
    postprocess_report: Any = None
    warnings: list[Any] = []
    attempts: int = 0


class JobList(_Open):
    jobs: list[JobView]


class Health(_Open):
    status: Literal["ok", "degraded"]
    worker: dict[str, Any]
    device: dict[str, Any]
    engines: dict[str, Any]
    postprocess: dict[str, Any]
    defaults: dict[str, Any]
