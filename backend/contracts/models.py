"""Request bodies of the API, validated once at the edge, and the shapes of its answers.

The answer models are built by the services (the job queue builds `JobView`) and declared as the
routes' `response_model`, so /openapi.json describes exactly what is sent. They forbid fields they
do not declare: a field a view adds must be declared here, where the document and the page see it.
The job statuses and their two sets (finished, unfinished) are defined here once; the store, the
queue and the page (through `/api/meta`) all read them from here.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from backend.contracts.engine_specs import EngineSpec, Licence, SliderEffect
from backend.utils.model_registry import DEFAULT_UPSCALE_MODEL, UPSCALE_MODELS

Engine = Literal["framepack", "morph", "wan"]
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
MIN_IMAGES_PER_JOB = 2  # one transition needs two images
MAX_PROMPT_CHARS = 2000
MAX_TAKES_ANY_JOB = 16  # the request's bound; the server's own limit is a setting at most this
# Bounds of the numbers in a take's URL and body: far above any transition or take that can exist
# (takes are numbered from 1, one more per re-roll), far below SQLite's 64-bit integers, so a huge
# number is refused as invalid (422) instead of overflowing the store.
MAX_TRANSITION_INDEX = MAX_IMAGES_ANY_JOB - 2  # 0-based; a job has one transition fewer than images
MAX_TAKE_NUMBER = 2**31 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _StrEnum(str, Enum):
    """A str enum that reads as its value everywhere (str(), f-strings, JSON, SQLite). Not
    `enum.StrEnum`: that is Python 3.11+, and the studio still starts on 3.10 (Ubuntu 22.04)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class JobStatus(_StrEnum):
    """A job's state. A str enum: rows in SQLite and JSON answers hold the plain words."""

    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    # Cut off by a stop or crash while running; it is queued again at start and resumes at its
    # first unfinished segment, so it is not finished: it counts as unfinished everywhere.
    interrupted = "interrupted"


# Will still run: the lanes take these at start-up and the WebSocket snapshot lists them.
UNFINISHED = (JobStatus.queued, JobStatus.running, JobStatus.interrupted)
# Done for good: nothing runs them again unless the user retries (failed, cancelled).
FINISHED = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)
# Waiting in a lane's queue, not running: a cancel ends these at once.
WAITING = (JobStatus.queued, JobStatus.interrupted)
RETRYABLE = (JobStatus.failed, JobStatus.cancelled)


class SegmentStatus(_StrEnum):
    pending = "pending"
    running = "running"
    done = "done"


class TakeStatus(_StrEnum):
    """A take's state; `failed` is a take cut off by an error, made again when the job is retried."""

    pending = "pending"
    running = "running"
    done = "done"
    failed = "failed"


MAX_LORAS_PER_TAKE = 4
LORA_WEIGHT_MIN, LORA_WEIGHT_MAX = -2.0, 2.0


class LoraChoice(_Strict):
    """One LoRA of `STUDIO_LORA_DIR` applied to a take, with its weight (diffusers' adapter weight)."""

    name: str = Field(..., min_length=1, max_length=200, description="its file name in the LoRA folder")
    weight: Annotated[float, Num] = Field(
        1.0, ge=LORA_WEIGHT_MIN, le=LORA_WEIGHT_MAX, allow_inf_nan=False, description="0 = off, 1 = as trained"
    )


class KeyframeChoice(_Strict):
    """An extra image inside one transition, at a time (`contracts/keyframes.py`): the motion passes
    through it within one generation. Not an image added to the storyboard (two transitions, a seam)."""

    image: str = Field(..., min_length=1, max_length=64, description="an upload id (POST /api/uploads)")
    at: Annotated[float, Num] = Field(
        ...,
        gt=0,
        le=120,
        allow_inf_nan=False,
        description="seconds from the transition's start; snaps to the engine's nearest point (FramePack: a "
        "1.2 s section boundary; Wan: a latent frame, 0.25 s) strictly inside the transition",
    )


class TransitionKeyframe(KeyframeChoice):
    transition: Annotated[int, Num] = Field(
        ..., ge=0, le=MAX_TRANSITION_INDEX, description="0-based transition, as in /transitions/{i}"
    )


MAX_KEYFRAMES_ANY_JOB = 64  # the request's bound; per transition the job layer allows MAX_PER_TRANSITION
KEYFRAMES_DOC = (
    "keyframes inside transitions (FramePack and Wan; morph refuses them): each an upload at a time in its "
    "transition, which the motion passes through without a seam; stored with the transition, so re-rolls keep them"
)

LoraChoices = list[LoraChoice] | None  # each name once: checked with the files (jobs/transition_options)
LORAS_DOC = "LoRAs of GET /api/loras with a weight each (FramePack and Wan; morph refuses them); left out or [] = none"


class JobSettings(_Strict):
    """The user's sliders. `None` means "not set": a suggestion or the default fills it in."""

    # allow_inf_nan=False: NaN would otherwise fail "<= 120" and be reported as too large.
    seconds: Annotated[float | None, Num] = Field(
        None, gt=0, le=120, allow_inf_nan=False, description="seconds per transition"
    )
    quality: Annotated[int | None, Num] = Field(None, ge=0, le=100)
    strength: Annotated[int | None, Num] = Field(None, ge=0, le=100)
    resolution: Annotated[int | None, Num] = Field(None, ge=32, le=1536, description="bucket edge in px")
    seed: Annotated[int | None, Num] = Field(None, ge=0, le=MAX_SEED)
    takes_per_transition: Annotated[int | None, Num] = Field(
        None,
        ge=1,
        le=MAX_TAKES_ANY_JOB,
        description="best of K: takes made per transition, each with its own seed; the best score is chosen "
        "(default 1, at most STUDIO_MAX_TAKES_PER_TRANSITION)",
    )
    end_influence: Annotated[float | None, Num] = Field(
        None,
        ge=0.05,
        le=1.0,
        allow_inf_nan=False,
        description="how hard the last image pulls, 0.05–1.0 (default 1.0, today's output): FramePack scales the "
        "last image's latent that anchors the clip's end; morph bends its dissolve; Wan refuses below 1.0",
    )
    loras: LoraChoices = Field(None, max_length=MAX_LORAS_PER_TAKE, description=LORAS_DOC)


class TakeCreate(_Strict):
    """A new take of one transition; what is left out is the transition's own value (a new random
    seed when no seed is given)."""

    seed: Annotated[int | None, Num] = Field(None, ge=0, le=MAX_SEED)
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    seconds: Annotated[float | None, Num] = Field(None, gt=0, le=120, allow_inf_nan=False)
    strength: Annotated[int | None, Num] = Field(None, ge=0, le=100)
    end_influence: Annotated[float | None, Num] = Field(
        None,
        ge=0.05,
        le=1.0,
        allow_inf_nan=False,
        description="how hard the last image pulls, 0.05–1.0 (default 1.0, today's output): FramePack scales the "
        "last image's latent that anchors the clip's end; morph bends its dissolve; Wan refuses below 1.0",
    )
    loras: LoraChoices = Field(
        None, max_length=MAX_LORAS_PER_TAKE, description="this take's LoRAs: left out = the transition's own, [] = none"
    )
    keyframes: list[KeyframeChoice] | None = Field(
        None,
        max_length=MAX_KEYFRAMES_ANY_JOB,
        description="this take's keyframes: left out = the transition's own, [] = none",
    )


class TakeChoice(_Strict):
    take: Annotated[int, Num] = Field(..., ge=1, le=MAX_TAKE_NUMBER)


class PostprocessOptions(_Strict):
    mode: Literal["off", "auto", "manual"] = "off"
    face_restore: bool = Field(False, strict=True)
    upscale: Annotated[Literal[1, 2, 4], Num] = 1
    interpolate: Annotated[Literal[1, 2, 4], Num] = 1
    upscale_model: Literal[UPSCALE_MODELS] = DEFAULT_UPSCALE_MODEL  # type: ignore[valid-type]
    codeformer_fidelity: Annotated[float | None, Num] = Field(None, ge=0, le=1, allow_inf_nan=False)


class JobCreate(_Strict):
    images: list[str] = Field(..., min_length=MIN_IMAGES_PER_JOB, max_length=MAX_IMAGES_ANY_JOB)
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    prompts: list[str | None] | None = Field(None, max_length=MAX_IMAGES_ANY_JOB)
    engine: Engine | None = None
    settings: JobSettings = Field(default_factory=JobSettings)
    postprocess: PostprocessOptions = Field(default_factory=PostprocessOptions)
    keyframes: list[TransitionKeyframe] = Field([], max_length=MAX_KEYFRAMES_ANY_JOB, description=KEYFRAMES_DOC)
    loop: bool = Field(
        False,
        description="close the storyboard: one more transition from the last image back to the first, "
        "so the video plays seamlessly in a loop (its last frame is the one before the first)",
    )

    @property
    def pairs(self) -> int:
        """The transitions this request makes: one per consecutive pair, and the wrap with `loop`."""
        return len(self.images) - 1 + (1 if self.loop else 0)

    @model_validator(mode="after")
    def _one_prompt_per_pair(self) -> JobCreate:
        pairs = self.pairs
        # With `loop`, a client that sends one prompt per consecutive pair only leaves the wrap
        # pair to the global prompt.
        allowed = {pairs, pairs - 1} if self.loop else {pairs}
        if self.prompts is not None and len(self.prompts) not in allowed:
            raise ValueError(
                f"'prompts' needs one entry per pair: {pairs} for {len(self.images)} images"
                f"{' with loop' if self.loop else ''}, got {len(self.prompts)}"
            )
        for text in self.prompts or []:
            if text is not None and len(text) > MAX_PROMPT_CHARS:
                raise ValueError(f"each prompt must be at most {MAX_PROMPT_CHARS} characters")
        return self

    def pair_prompts(self) -> list[str | None]:
        """The prompt of each pair: its own, else the global one."""
        own = list(self.prompts or [])
        own += [None] * (self.pairs - len(own))
        return [(p if p and p.strip() else self.prompt) for p in own]


class JobEdit(_Strict):
    """`PATCH /api/jobs/{id}`: a queued job's request before it starts. Each field given replaces
    the job's (a `settings` object replaces all the sliders: what it leaves out is unset); the
    images stay. The parameters are resolved again as at submit."""

    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    prompts: list[str | None] | None = Field(None, max_length=MAX_IMAGES_ANY_JOB)
    engine: Engine | None = None
    settings: JobSettings | None = None
    postprocess: PostprocessOptions | None = None
    keyframes: list[TransitionKeyframe] | None = Field(
        None, max_length=MAX_KEYFRAMES_ANY_JOB, description=KEYFRAMES_DOC
    )


class MoveBy(_Strict):
    """`POST /api/jobs/{id}/move`: one place `up` (runs sooner) or `down`."""

    direction: Literal["up", "down"]


class MoveBefore(_Strict):
    """`POST /api/jobs/{id}/move`: just before another waiting job."""

    before: str = Field(max_length=64, description="the id of a waiting job")


JobMove = MoveBy | MoveBefore


class QueueOrder(_Strict):
    jobs: list[JobView] = Field(description="the waiting jobs, first to run first")


class CancelledJobs(_Strict):
    cancelled: list[str] = Field(description="the ids of the jobs cancelled")


class ParamsPreview(_Strict):
    images: list[str] | None = Field(None, max_length=MAX_IMAGES_ANY_JOB)
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    prompts: list[str | None] | None = Field(
        None, max_length=MAX_IMAGES_ANY_JOB, description="per pair; a timed one's sections are shown"
    )
    settings: JobSettings = Field(default_factory=JobSettings)
    engine: Engine | None = None
    keyframes: list[TransitionKeyframe] = Field(
        [], max_length=MAX_KEYFRAMES_ANY_JOB, description="each is shown where it lands (segments[i].keyframes)"
    )


# --- answers ----------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    """Every error the studio answers: one sentence, in English and Korean (`detail`), and the
    same sentence as a code of backend.contracts.messages with its parameters, which the page renders in
    its own language. Some errors add data fields (engine_not_ready: `engine`, `missing`, `fix`)."""

    model_config = ConfigDict(extra="allow")

    detail: str
    code: str
    params: dict[str, Any] = {}


class UploadView(_Strict):
    id: str
    width: int
    height: int
    url: str
    filename: str


class UploadList(_Strict):
    uploads: list[UploadView]


class ParamsView(_Strict):
    params: dict[str, Any]
    segments: int
    sliders: list[SliderEffect] = Field(
        default_factory=list, description="what each slider sets for this engine: its spec's mapping, then the CRF"
    )


class JobCreated(_Strict):
    id: str
    status: JobStatus


class JobImage(_Strict):
    id: str
    url: str
    width: int | None = None
    height: int | None = None


class SegmentView(_Strict):
    index: int
    status: SegmentStatus
    progress: float
    frames: int | None = None
    video_url: str | None = None


class PlacedKeyframe(_Strict):
    """A keyframe where it lands (`contracts/keyframes.Placed`), as stored with a transition or take."""

    image: str
    at: float = Field(description="seconds, as asked")
    point: int = Field(description="the engine's grid point (FramePack: section boundary; Wan: latent frame)")
    lands_at: float = Field(description="that point's time in seconds")
    url: str | None = Field(None, description="the image's URL (views fill it in; the stored plan has the id only)")


class TakeView(_Strict):
    """One generated attempt at a transition, with the parameters it was made with and its score."""

    take: int = Field(description="1-based, per transition")
    status: TakeStatus
    chosen: bool
    seed: int | None = None
    prompt: str | None = Field(None, description="this take's own prompt; null: the job's prompt for the pair")
    seconds: float | None = None
    strength: int | None = None
    frames: int | None = None
    video_url: str | None = None
    created_at: float | None = None
    overall: float | None = Field(None, description="the score's overall value, 0..100 (docs/scores.md)")
    score: dict[str, Any] | None = Field(None, description="the take's score in full (docs/scores.md)")
    loras: list[LoraChoice] = Field([], description="the LoRAs and weights this take is made with ([]: none)")
    keyframes: list[PlacedKeyframe] = Field([], description="the keyframes this take passes through ([]: none)")


class TransitionView(_Strict):
    index: int = Field(description="0-based, as in the URL /transitions/{i}")
    chosen: int | None = Field(None, description="the chosen take's number")
    takes: list[TakeView] = []
    seam_after: dict[str, Any] | None = Field(
        None, description="the seam score between this transition's chosen take and the next's, at the last join"
    )


class JobView(_Strict):
    """A job as every route and event shows it (`GET /api/jobs/<id>`, the `job` of job events)."""

    id: str
    status: JobStatus
    progress: float
    stage: str | None = None
    error: str | None = Field(None, description="the sentence the page shows, in English and Korean")
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    engine: str | None = None
    images: list[JobImage] = []
    prompts: list[Any] = Field([], description="one {original, english} per pair")
    settings: dict[str, Any] | None = None
    postprocess: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    segments: list[SegmentView] = []
    transitions: list[TransitionView] = Field([], description="each transition's takes and the seam after it")
    current: dict[str, Any] | None = None
    preview_url: str | None = None
    video_url: str | None = None
    postprocess_report: Any = None
    warnings: list[Any] = []
    attempts: int = 0
    position: int | None = Field(
        None,
        description="its place in the queue: among waiting jobs (queued, interrupted) the lowest runs first, "
        "each lane taking its own engine's; moved by POST /api/jobs/{id}/move",
    )
    details: str | None = Field(None, description="failed jobs: the technical cause (exception type and text)")
    error_message: dict[str, Any] | None = Field(
        None,
        description="failed jobs: `error` as a catalogue message `{code, params}` (GET /api/messages), "
        "so the page can say it in its own language",
    )


class JobList(_Strict):
    jobs: list[JobView]


class LaneStatus(_Strict):
    ok: bool
    state: Literal["dead", "cannot_save", "stalled", "running", "idle"]
    running: str | None = None
    running_jobs: list[str] = Field(
        default_factory=list, description="every job the lane runs now (a Ray pool runs several)"
    )
    queued: int
    restarts: int
    quiet_s: float | None = None
    last_error: str | None = None
    state_error: str | None = None


class WorkerStatus(LaneStatus):
    """The least healthy lane's state at the top level (one dead lane makes the studio degraded)."""

    lanes: dict[str, LaneStatus]


class HealthDefaults(_Strict):
    engine: str = Field(description="what a job without an engine gets: the configured one while it is installed")
    configured_engine: str
    max_seconds_per_transition: float
    max_images_per_job: int
    resolution: int = Field(description="the bucket the page starts at: the memory plan's default for this GPU")


class EngineState(BaseModel):
    """One engine on /api/health: its own `describe()` (ready, installed, reason, plan, …) and the
    licence its spec declares."""

    model_config = ConfigDict(extra="allow")

    licence: Licence


class Health(_Strict):
    status: Literal["ok", "degraded"]
    worker: WorkerStatus
    device: dict[str, Any]
    engines: dict[str, EngineState]
    postprocess: dict[str, Any]
    defaults: HealthDefaults


class StatusSets(_Strict):
    all: list[JobStatus]
    finished: list[JobStatus]
    unfinished: list[JobStatus]


class SettingDefaults(_Strict):
    """What a slider left unset becomes when no image-analysis suggestion applies."""

    seconds: float
    quality: int
    strength: int
    resolution: int
    seed: int | None = None


class JobDefaults(_Strict):
    engine: str = Field(description="the configured default engine; /api/health says which one jobs get now")
    settings: SettingDefaults
    postprocess: PostprocessOptions


class Limits(_Strict):
    min_images_per_job: int
    max_images_per_job: int
    max_seconds_per_transition: float
    max_takes_per_transition: int
    max_takes_kept: int
    max_prompt_chars: int
    max_files_per_upload: int
    max_upload_mb: float


class Meta(_Strict):
    """Facts of this server that the page would otherwise copy: fixed while the process runs."""

    statuses: StatusSets
    defaults: JobDefaults
    limits: Limits
    engines: dict[str, EngineSpec] = Field(
        default_factory=dict, description="every engine's spec: licence, needs, frame rule, slider mapping"
    )


# --- presets and settings read from a video --------------------------------------------------------
MAX_PRESET_NAME_CHARS = 60


class ComposerSettings(BaseModel):
    """What the composer holds besides its images: the engine, the sliders, post-processing and the
    prompts (`prompt` for every pair, `prompts` one per pair). Every field optional; a preset or a
    video gives what it has. Fields the studio does not know yet are refused."""

    model_config = ConfigDict(extra="forbid")

    engine: Engine | None = None
    settings: JobSettings | None = None
    postprocess: PostprocessOptions | None = None
    prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    prompts: list[str | None] | None = Field(None, max_length=MAX_IMAGES_ANY_JOB)


class PresetCreate(_Strict):
    # The length is checked by the service, so a long name is answered with its own sentence.
    name: str = Field(description=f"1 to {MAX_PRESET_NAME_CHARS} characters, unique (case and spaces ignored)")
    settings: ComposerSettings


class PresetRename(_Strict):
    name: str


class PresetView(_Strict):
    id: str
    name: str = Field(description="a built-in's name is in English; `builtin` names its key for the page's words")
    name_message: dict[str, Any] | None = Field(
        None, description="a built-in's name as a catalogue message `{code, params}`, for the page's language"
    )
    builtin: str | None = Field(None, description="draft, final, loop or t4 for a built-in (read-only), else null")
    settings: ComposerSettings
    created_at: float | None = None
    updated_at: float | None = None


class PresetList(_Strict):
    presets: list[PresetView] = Field(description="the built-ins first, then the user's in the order saved")
    max_name_chars: int


class VideoSettings(_Strict):
    """What `POST /api/settings-from-video` read from a video the studio made."""

    job_id: str | None = Field(None, description="the job that made it, when the file says")
    source: Literal["studio_settings", "studio_params"] = Field(
        description="studio_settings: the composer's own values (videos made from this version on); "
        "studio_params: rebuilt from the resolved parameters and the comment of an older video"
    )
    settings: ComposerSettings


# --- exports ----------------------------------------------------------------------------------
EXPORT_FORMATS = ("webm", "gif", "frames_zip", "frame_png", "pingpong_mp4")


class ExportState(_StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class ExportTake(_Strict):
    index: Annotated[int, Num] = Field(description="0-based transition, as in /transitions/{i}")
    take: Annotated[int, Num] = Field(description="1-based take of that transition")


class ExportCreate(_Strict):
    """`POST /api/jobs/{id}/exports`: what to make from the job's video (or one take's)."""

    # A plain string, checked by the export service, so an unknown one is answered with its own sentence.
    format: str = Field(
        description="webm, gif, frames_zip (every frame as PNG in a zip), frame_png (one frame), "
        "pingpong_mp4 (forwards then backwards, a seamless loop)",
        json_schema_extra={"enum": list(EXPORT_FORMATS)},
    )
    take: ExportTake | None = Field(None, description="one take instead of the job's final video")
    width: Annotated[int, Num] | None = Field(
        None, description="pixels; the height follows the aspect ratio. Default: the video's (GIF: at most 480)"
    )
    fps: Annotated[float, Num] | None = Field(
        None, description="frames per second, at most the video's own. Default: the video's (GIF: at most 15)"
    )
    frame: Literal["first", "last"] | Annotated[int, Num] | None = Field(
        None, description="frame_png only: first, last (default) or a 0-based frame number"
    )


class ExportView(_Strict):
    """An export as `GET /api/jobs/{id}/exports/{export_id}` shows it."""

    id: str
    job_id: str
    format: str
    take: ExportTake | None = None
    state: ExportState
    progress: float = Field(description="0..1")
    url: str | None = Field(None, description="the file's /files/outputs/... URL once done")
    filename: str | None = Field(None, description="a name to save it under")
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frames: int | None = Field(None, description="frames written (frame_png: 1)")
    frame: int | None = Field(None, description="frame_png: the 0-based frame it shows")
    bytes: int | None = None
    elapsed_s: float | None = Field(None, description="seconds the export took to make")
    error: str | None = Field(None, description="failed: the sentence, in English and Korean")
    error_message: dict[str, Any] | None = Field(None, description="failed: `error` as a catalogue message")
    created_at: float


class LoraView(_Strict):
    """One LoRA file of `STUDIO_LORA_DIR`, as its safetensors header describes it."""

    name: str
    size_bytes: int
    rank: int | None = None
    format: str | None = Field(
        None, description="kohya, original, diffusers (HunyuanVideo/FramePack); musubi, comfyui, diffusers (Wan)"
    )
    engine: Literal["framepack", "wan"] | None = Field(None, description="the engine it fits, from its key names")
    reason: str | None = Field(None, description="why it fits no engine (Korean and English)")
    reason_code: str | None = None
    reason_params: dict[str, Any] | None = None


class LoraList(_Strict):
    folder: str = Field(..., description="STUDIO_LORA_DIR, where the files are put")
    max_per_take: int = MAX_LORAS_PER_TAKE
    weight_min: float = LORA_WEIGHT_MIN
    weight_max: float = LORA_WEIGHT_MAX
    items: list[LoraView]
