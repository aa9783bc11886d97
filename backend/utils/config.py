"""The studio's one settings object, read from the environment and `.env`.

Every field here is documented in `.env.sample`. Code receives a `Settings` instance (the app keeps
it on `app.state.settings`); nothing reads `os.environ` directly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.contracts import messages

log = logging.getLogger(__name__)

# Settings earlier versions read and this one does not, with what to do instead. An old `.env` (or
# environment) that still sets one starts all the same, with one warning per process.
RETIRED = {"STUDIO_OUTPUT_FPS": "setting_retired_output_fps"}  # name -> its catalogue sentence
_warned_retired: set[str] = set()


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def _warn_retired(data: Any) -> None:
    # pydantic-settings hands `.env` lines that match no field over in lower case; the process
    # environment only through fields, so it is read here for these names alone.
    given = {str(k).upper() for k in data} if isinstance(data, dict) else set()
    given |= {k.upper() for k in os.environ}
    for name, code in RETIRED.items():
        if name in given and name not in _warned_retired:
            _warned_retired.add(name)
            log.warning("%s is no longer a setting and is ignored: %s", name, messages.bilingual(code))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- server -------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", validation_alias=_env("STUDIO_HOST"))
    port: int = Field(8000, validation_alias=_env("STUDIO_PORT"))
    data_dir: Path = Field(Path("static"), validation_alias=_env("STUDIO_DATA_DIR"))

    # --- FramePack model ----------------------------------------------------------------------
    # A folder in diffusers pipeline layout (what `save_pretrained` writes). When empty the
    # pipeline is assembled from the three hub repos below.
    framepack_dir: str = Field("", validation_alias=_env("FRAMEPACK_DIR"))
    framepack_transformer: str = Field("lllyasviel/FramePackI2V_HY", validation_alias=_env("FRAMEPACK_TRANSFORMER"))
    framepack_base: str = Field("hunyuanvideo-community/HunyuanVideo", validation_alias=_env("FRAMEPACK_BASE"))
    framepack_image_encoder: str = Field("lllyasviel/flux_redux_bfl", validation_alias=_env("FRAMEPACK_IMAGE_ENCODER"))
    hf_token: str = Field("", validation_alias=_env("HF_TOKEN"))
    models_dir: Path = Field(Path("models"), validation_alias=_env("STUDIO_MODELS_DIR"))
    # User LoRAs (*.safetensors) for FramePack and Wan; empty = STUDIO_MODELS_DIR/loras.
    lora_dir: Path | None = Field(None, validation_alias=_env("STUDIO_LORA_DIR"))

    # --- device -------------------------------------------------------------------------------
    device: Literal["auto", "cuda", "cpu"] = Field("auto", validation_alias=_env("STUDIO_DEVICE"))
    # auto: the memory plan (blocks on GPU / RAM / disk) from VRAM, RAM, capability and bucket.
    gpu_profile: Literal["auto", "resident", "fp8", "offload"] = Field(
        "auto", validation_alias=_env("STUDIO_GPU_PROFILE")
    )
    # Streamed transformer weights: bf16 (bit-exact) or 8-bit with per-channel scales (half the
    # bytes, not bit-exact; error in benchmarks/README.md); auto = bf16 where host RAM holds them.
    offload_weights: Literal["auto", "bf16", "fp8"] = Field("auto", validation_alias=_env("STUDIO_OFFLOAD_WEIGHTS"))
    # How fp8 mode and 8-bit offload store the weights: int8 or float8 e4m3, both with one scale per
    # output channel, computed in bf16. int8 is the more accurate (measured in benchmarks/README.md).
    storage_8bit: Literal["int8", "fp8"] = Field("int8", validation_alias=_env("STUDIO_STORAGE_8BIT"))
    # How the FramePack transformer computes: auto = bf16 on GPUs with compute capability >= 8.0,
    # fp16 with an fp32 residual stream below (T4, RTX 20xx: no bf16); fp32 is the slow safe choice.
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", validation_alias=_env("STUDIO_COMPUTE_DTYPE")
    )
    # The largest bucket edge the memory plan leaves activation room for (0 = 640, the page's
    # default); jobs above it are refused with a clear message instead of running out of VRAM.
    plan_bucket: int = Field(0, ge=0, le=1536, validation_alias=_env("STUDIO_PLAN_BUCKET"))
    # Plan (and cap the allocator) as if the GPU had this much VRAM / the machine this much RAM,
    # in GiB (0 = what is there): sharing a GPU, or simulating a smaller machine.
    vram_limit_gib: float = Field(0.0, ge=0, validation_alias=_env("STUDIO_VRAM_LIMIT_GIB"))
    ram_limit_gib: float = Field(0.0, ge=0, validation_alias=_env("STUDIO_RAM_LIMIT_GIB"))
    # Disk-tier blocks read ahead of the GPU (each holds one block's bytes in pinned RAM).
    read_ahead_blocks: int = Field(2, ge=1, le=8, validation_alias=_env("STUDIO_READ_AHEAD_BLOCKS"))
    # Threads reading each disk-tier block (in slices): one thread copies only 4-5 GiB/s.
    read_threads: int = Field(8, ge=1, le=32, validation_alias=_env("STUDIO_READ_THREADS"))
    default_engine: Literal["framepack", "wan", "morph"] = Field(
        "framepack", validation_alias=_env("STUDIO_DEFAULT_ENGINE")
    )
    # Which model the `wan` engine runs (one per server: each is a 14B-class download of its own,
    # fetched by `setup.sh --only wan` / `--only wan22`): Wan 2.1 FLF2V 14B (trained for first+last
    # frame, CLIP-conditioned) or Wan 2.2 I2V A14B (two experts, high-noise then low-noise, first+last
    # frame through the same latent conditioning). /api/health's wan entry and each job's params
    # name it.
    wan_model: Literal["wan2.1-flf2v", "wan2.2-i2v-a14b"] = Field(
        "wan2.1-flf2v", validation_alias=_env("STUDIO_WAN_MODEL")
    )
    # The studio's own repository (the Colab notebook clones it; docs name it).
    repo_url: str = Field(
        "https://github.com/hyunlord/image-video-studio.git", validation_alias=_env("STUDIO_REPO_URL")
    )
    # Regional torch.compile of the FramePack transformer blocks on CUDA (auto = on when Triton is
    # there); kernels are cached under STUDIO_MODELS_DIR/torch_compile_cache.
    framepack_compile: Literal["auto", "on", "off"] = Field("auto", validation_alias=_env("STUDIO_FRAMEPACK_COMPILE"))
    # Compile (warm up) once while the model loads, so the first section does not pay for it.
    framepack_warmup: bool = Field(True, validation_alias=_env("STUDIO_FRAMEPACK_WARMUP"))
    # Regional torch.compile of Wan's 40 transformer blocks (each expert's on Wan 2.2) when the model
    # is resident on a CUDA GPU (auto = on when Triton is there); the first Wan job compiles them
    # (the same kernel cache). Not bit-identical to eager: benchmarks/README.md gives the difference.
    wan_compile: Literal["auto", "on", "off"] = Field("auto", validation_alias=_env("STUDIO_WAN_COMPILE"))
    # FP8 matmuls in the transformer blocks of FramePack and Wan on Hopper/Ada (resident). Faster, not
    # bit-exact: off by default; the measured error against bf16 is in benchmarks/README.md.
    fp8_matmul: bool = Field(False, validation_alias=_env("STUDIO_FP8_MATMUL"))

    # --- uploads and jobs ---------------------------------------------------------------------
    max_upload_mb: float = Field(25.0, validation_alias=_env("STUDIO_MAX_UPLOAD_MB"))
    max_image_pixels: int = Field(40_000_000, validation_alias=_env("STUDIO_MAX_IMAGE_PIXELS"))
    max_image_edge: int = Field(12_000, validation_alias=_env("STUDIO_MAX_IMAGE_EDGE"))
    max_files_per_upload: int = Field(32, validation_alias=_env("STUDIO_MAX_FILES_PER_UPLOAD"))
    max_images_per_job: int = Field(32, validation_alias=_env("STUDIO_MAX_IMAGES_PER_JOB"))
    max_seconds_per_transition: float = Field(20.0, validation_alias=_env("STUDIO_MAX_SECONDS_PER_TRANSITION"))
    # Most takes a job may ask for per transition (best of K): each one is a full generation.
    max_takes_per_transition: int = Field(4, ge=1, le=16, validation_alias=_env("STUDIO_MAX_TAKES_PER_TRANSITION"))
    # Most takes one transition keeps, re-rolls included: a re-roll past it is refused (409) until a
    # take is deleted, so one transition cannot fill the disk with attempts.
    max_takes_kept: int = Field(8, ge=1, le=64, validation_alias=_env("STUDIO_MAX_TAKES_KEPT"))
    # New uploads and jobs are refused (507) while the data folder's disk has less free space than
    # this (0 = no floor), so running jobs and the database never meet a full disk.
    min_free_mb: float = Field(1024.0, ge=0, validation_alias=_env("STUDIO_MIN_FREE_MB"))
    # Most the data folder (uploads, outputs, database) may hold; 0 = no quota. New uploads and jobs
    # are refused (507) past it.
    data_quota_mb: float = Field(0.0, ge=0, validation_alias=_env("STUDIO_DATA_QUOTA_MB"))
    # Request bodies: a JSON body larger than this is refused (413) before it is parsed.
    max_json_body_kb: int = Field(1024, gt=0, validation_alias=_env("STUDIO_MAX_JSON_BODY_KB"))
    # POST /api/settings-from-video reads at most this much of a video (the page sends the file's
    # start: the studio writes its settings there); a larger body is refused (413).
    video_probe_mb: float = Field(8.0, gt=0, le=512, validation_alias=_env("STUDIO_VIDEO_PROBE_MB"))
    # A request body that pauses longer than this, or (after that much time) averages less than
    # body_min_rate_kb_s, or takes longer than body_max_s in all, is ended with 408: a client
    # trickling bytes cannot hold a connection and an upload slot for as long as it likes.
    body_idle_timeout_s: float = Field(15.0, gt=0, validation_alias=_env("STUDIO_BODY_IDLE_TIMEOUT_S"))
    body_min_rate_kb_s: float = Field(8.0, ge=0, validation_alias=_env("STUDIO_BODY_MIN_RATE_KB_S"))
    body_max_s: float = Field(1800.0, gt=0, validation_alias=_env("STUDIO_BODY_MAX_S"))
    # Upload requests being received or decoded at once, in all (more get 503) and per client
    # address (more get 429). The page sends three at a time, so two tabs fit.
    max_uploads_in_flight: int = Field(16, ge=1, validation_alias=_env("STUDIO_MAX_UPLOADS_IN_FLIGHT"))
    max_uploads_per_client: int = Field(6, ge=1, validation_alias=_env("STUDIO_MAX_UPLOADS_PER_CLIENT"))
    # A connection must send a complete request head (request line and headers) within this many
    # seconds of opening, or of its previous answer, or it gets 408 and is closed (0 = no limit):
    # a head sent a byte every few seconds would otherwise hold the connection for ever.
    header_timeout_s: float = Field(10.0, ge=0, validation_alias=_env("STUDIO_HEADER_TIMEOUT_S"))
    # Open connections one client address may hold (0 = no cap); more get 429 and are closed at
    # once. Trusted proxies are exempt. A page uses about 8 (6 for files, 2 WebSockets) per tab.
    max_connections_per_address: int = Field(64, ge=0, validation_alias=_env("STUDIO_MAX_CONNECTIONS_PER_ADDRESS"))
    # A request refused before its body is read (413 from its declared length, 429, 503) is
    # answered at once, then its body is read and dropped for up to this long and this many MB
    # before the connection closes: closing on unread bytes resets the connection, and a client
    # still sending would see the reset instead of the answer. A body declared larger than the MB
    # is not read: its connection closes at once (0 here also turns the drain off).
    refused_body_drain_s: float = Field(10.0, ge=0, validation_alias=_env("STUDIO_REFUSED_BODY_DRAIN_S"))
    refused_body_drain_mb: float = Field(64.0, ge=0, validation_alias=_env("STUDIO_REFUSED_BODY_DRAIN_MB"))
    # Threads that decode and re-encode uploaded images, off the event loop. 0 decodes on the
    # event loop itself (every request waits meanwhile): only for the latency benchmark's reference.
    image_workers: int = Field(2, ge=0, validation_alias=_env("STUDIO_IMAGE_WORKERS"))
    # A running job that reports nothing (no step, no section, no stage) for this long marks the
    # worker "stalled" in /api/health (answered 503 then, so a supervisor can restart the studio).
    worker_stall_s: float = Field(900.0, gt=0, validation_alias=_env("STUDIO_WORKER_STALL_S"))

    # --- exports (a finished job's or a take's video as WebM, GIF, PNG frames, ping-pong) ---------
    # Threads that make exports, off the event loop (each encode is one at a time per thread).
    export_workers: int = Field(1, ge=1, le=8, validation_alias=_env("STUDIO_EXPORT_WORKERS"))
    # Exports waiting or running at once, in all; more are refused (503) until one is done.
    export_max_pending: int = Field(8, ge=1, validation_alias=_env("STUDIO_EXPORT_MAX_PENDING"))
    # Widest export (pixels; the height follows the video's aspect ratio); GIFs have their own bound.
    export_max_width: int = Field(1920, ge=16, le=7680, validation_alias=_env("STUDIO_EXPORT_MAX_WIDTH"))
    export_gif_max_width: int = Field(720, ge=16, le=7680, validation_alias=_env("STUDIO_EXPORT_GIF_MAX_WIDTH"))
    # Highest frame rate an export may ask for (never above the video's own); GIFs have their own.
    export_max_fps: float = Field(60.0, gt=0, le=240, validation_alias=_env("STUDIO_EXPORT_MAX_FPS"))
    export_gif_max_fps: float = Field(30.0, gt=0, le=50, validation_alias=_env("STUDIO_EXPORT_GIF_MAX_FPS"))

    # --- scale-out ----------------------------------------------------------------------------
    # embedded: the jobs run in this process (one worker per engine), no Ray. ray: a pool of Ray
    # actors, one per GPU, makes a job's transitions in parallel (docs/deploy.md).
    cluster: Literal["embedded", "ray"] = Field("embedded", validation_alias=_env("STUDIO_CLUSTER"))
    # Empty: start a Ray on this host for the pool. Otherwise an existing cluster: "auto" or HOST:PORT.
    ray_address: str = Field("", validation_alias=_env("STUDIO_RAY_ADDRESS"))
    # 0: one worker per GPU in the cluster (one CPU worker when it has none); N: exactly N workers.
    ray_workers: int = Field(0, ge=0, le=256, validation_alias=_env("STUDIO_RAY_WORKERS"))
    # Times a transition is run again after its worker died (kill, lost host) before the job fails.
    ray_task_retries: int = Field(3, ge=0, le=20, validation_alias=_env("STUDIO_RAY_TASK_RETRIES"))

    # --- post-processing ----------------------------------------------------------------------
    codeformer_dir: Path = Field(Path("models/codeformer"), validation_alias=_env("CODEFORMER_DIR"))
    rife_dir: Path = Field(Path("models/rife"), validation_alias=_env("RIFE_DIR"))
    upscaler_dir: Path = Field(Path("models/realesrgan"), validation_alias=_env("UPSCALER_DIR"))
    facexlib_dir: Path = Field(Path("models/facexlib"), validation_alias=_env("FACEXLIB_DIR"))
    upscale_target_edge: int = Field(1080, validation_alias=_env("STUDIO_UPSCALE_TARGET_EDGE"))
    codeformer_fidelity: float = Field(0.7, validation_alias=_env("STUDIO_CODEFORMER_FIDELITY"))
    # Frames per chunk through face restore -> upscale -> interpolate -> encode: bounds peak RAM.
    post_chunk_frames: int = Field(16, validation_alias=_env("STUDIO_POST_CHUNK_FRAMES"))
    # Upscaler tile edge in input pixels (0 = whole frame) and the overlap that hides tile seams.
    upscale_tile: int = Field(256, validation_alias=_env("STUDIO_UPSCALE_TILE"))
    upscale_tile_overlap: int = Field(16, validation_alias=_env("STUDIO_UPSCALE_TILE_OVERLAP"))
    rife_model: Literal["4.25", "4.26"] = Field("4.25", validation_alias=_env("STUDIO_RIFE_MODEL"))
    # Mean absolute difference (0..1, grey thumbnails) above which two frames are a hard cut
    # and are not interpolated.
    scene_change_threshold: float = Field(0.12, validation_alias=_env("STUDIO_SCENE_CHANGE_THRESHOLD"))
    weights_download_timeout_s: float = Field(30.0, validation_alias=_env("STUDIO_WEIGHTS_DOWNLOAD_TIMEOUT_S"))
    # Base URL serving the weight files by file name; empty = the registry's URLs.
    weights_mirror: str = Field("", validation_alias=_env("STUDIO_WEIGHTS_MIRROR"))
    # A host that could not be reached is not tried again for this long.
    unreachable_retry_s: float = Field(120.0, ge=0, validation_alias=_env("STUDIO_UNREACHABLE_RETRY_S"))

    # --- prompts and image analysis -----------------------------------------------------------
    translate_timeout_s: float = Field(8.0, validation_alias=_env("STUDIO_TRANSLATE_TIMEOUT_S"))
    # Where googletrans sends requests (host[:port]); empty = its default Google endpoint.
    translate_service_url: str = Field("", validation_alias=_env("STUDIO_TRANSLATE_SERVICE_URL"))
    marian_ko_en_dir: str = Field("", validation_alias=_env("STUDIO_MARIAN_KO_EN_DIR"))
    openclip_model: str = Field("ViT-B-32", validation_alias=_env("STUDIO_OPENCLIP_MODEL"))
    openclip_pretrained: str = Field("laion2b_s34b_b79k", validation_alias=_env("STUDIO_OPENCLIP_PRETRAINED"))
    fit_mode: Literal["crop", "pad"] = Field("crop", validation_alias=_env("STUDIO_FIT_MODE"))
    # Tries of the online translator per text (1 + retries), then it is skipped for the cooldown
    # so an offline machine does not wait out every clause of every pair.
    translate_retries: int = Field(2, ge=0, validation_alias=_env("STUDIO_TRANSLATE_RETRIES"))
    translate_cooldown_s: float = Field(60.0, ge=0, validation_alias=_env("STUDIO_TRANSLATE_COOLDOWN_S"))
    # Requests never wait for the OpenCLIP model (it loads in the background); a FramePack job
    # with blank prompts waits at most this long for the analysis before using a generic prompt.
    analysis_load_timeout_s: float = Field(60.0, gt=0, validation_alias=_env("STUDIO_ANALYSIS_LOAD_TIMEOUT_S"))

    # --- access control -----------------------------------------------------------------------
    token: str = Field("", validation_alias=_env("STUDIO_TOKEN"))
    allow_open_lan: bool = Field(False, validation_alias=_env("STUDIO_ALLOW_OPEN_LAN"))
    cors_origins: str = Field("", validation_alias=_env("STUDIO_CORS_ORIGINS"))
    # Host names the studio is reached by, besides loopback names, IP addresses and STUDIO_HOST
    # (comma-separated; ".example.com" or "*.example.com" also matches its subdomains). Any other
    # Host header is refused (400): that is what stops DNS-rebinding pages.
    allowed_hosts: str = Field("", validation_alias=_env("STUDIO_ALLOWED_HOSTS"))
    # Addresses of reverse proxies whose X-Forwarded-For/-Proto/-Host are believed (comma-
    # separated). Empty = none, except loopback when STUDIO_BEHIND_TUNNEL is set (the tunnel
    # agent connects from there; the token is then always required).
    trusted_proxies: str = Field("", validation_alias=_env("STUDIO_TRUSTED_PROXIES"))
    # Set when a tunnel (ngrok, Colab) forwards public traffic to a loopback server: a token is
    # then generated if none is set, and STUDIO_ALLOW_OPEN_LAN cannot switch the check off.
    behind_tunnel: bool = Field(False, validation_alias=_env("STUDIO_BEHIND_TUNNEL"))
    # Failed token attempts (login or wrong bearer) allowed per client address per window.
    login_max_failures: int = Field(5, ge=1, validation_alias=_env("STUDIO_LOGIN_MAX_FAILURES"))
    login_window_s: float = Field(60.0, gt=0, validation_alias=_env("STUDIO_LOGIN_WINDOW_S"))

    # --- pages and monitor --------------------------------------------------------------------
    # Where /vendor/<pkg>/... redirects when frontend/node_modules lacks the package (no npm at
    # set-up): the same pinned version from this npm CDN, as <base>/<pkg>@<version>/<path>.
    vendor_cdn: str = Field("https://cdn.jsdelivr.net/npm", validation_alias=_env("STUDIO_VENDOR_CDN"))
    # /ws/monitor sends one sample per interval and keeps this much history for the charts.
    monitor_interval_s: float = Field(1.0, gt=0, validation_alias=_env("STUDIO_MONITOR_INTERVAL_S"))
    monitor_history_s: float = Field(600.0, gt=0, validation_alias=_env("STUDIO_MONITOR_HISTORY_S"))

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        _warn_retired(data)
        return data

    @field_validator("data_dir", "models_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # Derived locations: one place decides where files live.
    @property
    def loras_dir(self) -> Path:
        return self.lora_dir.expanduser().resolve() if self.lora_dir else self.models_dir / "loras"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def incoming_dir(self) -> Path:
        # Beside the uploads folder, not in it: files in progress must never be served.
        return self.data_dir / ".incoming"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "studio.sqlite3"

    @property
    def trusted_proxy_addresses(self) -> list[str]:
        given = [a.strip() for a in self.trusted_proxies.split(",") if a.strip()]
        return given or (["127.0.0.1", "::1"] if self.behind_tunnel else [])

    @property
    def video_probe_bytes(self) -> int:
        return int(self.video_probe_mb * 1024 * 1024)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.uploads_dir, self.outputs_dir):
            path.mkdir(parents=True, exist_ok=True)
