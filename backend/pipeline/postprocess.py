"""The post-processing chain: face restore -> upscale -> interpolate -> encode, streamed.

`plan_postprocess` turns the job's "postprocess" options into a `PostPlan`: in manual mode the
user's toggles as they are, in auto mode decisions taken from the video itself (faces found in
sampled frames, the short frame edge against `upscale_target_edge`, the frame rate against
60 fps), each with a reason a person can read. `run_postprocess` then decodes the source in
chunks of `post_chunk_frames`, pushes every chunk through the enabled stages and into the
encoder, so peak memory depends on the chunk size and never on the video's length. The output is
written under a temporary name and renamed only when complete; a cancel (JobCancelled raised by
the progress callback) or a failure leaves no half video at `dst`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from backend.contracts import messages
from backend.contracts.errors import StudioError, as_param
from backend.utils.model_registry import DEFAULT_UPSCALE_MODEL, UPSCALE_MODELS, MissingWeightError, ensure_weight
from backend.utils.progress import Progress, ProgressCallback
from backend.utils.video_io import VideoInfo, VideoWriter, iter_frames, probe

TARGET_FPS = 60.0
SAMPLE_FRAMES = 8  # frames auto mode looks at for faces


class PostprocessError(StudioError, RuntimeError):
    """A stage could not run; `stage` names it and `cause` (a message) says what is missing and
    where to put it."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__("postprocess_stage_failed", stage=stage, cause=as_param(cause))
        self.stage = stage

    def cause_text(self, lang: str) -> str:
        cause = self.params["cause"]
        return messages.render(cause["code"], lang, cause["params"]) if isinstance(cause, dict) else str(cause)


@dataclass
class PostPlan:
    mode: str
    face_restore: bool = False
    upscale: int = 1
    upscale_model: str = DEFAULT_UPSCALE_MODEL
    interpolate: int = 1
    codeformer_fidelity: float = 0.7
    reasons: list[str] = field(default_factory=list)

    @property
    def stages(self) -> list[str]:
        names = []
        if self.face_restore:
            names.append("face_restore")
        if self.upscale > 1:
            names.append("upscale")
        if self.interpolate > 1:
            names.append("interpolate")
        return names

    def to_dict(self) -> dict:
        return {**asdict(self), "stages": self.stages}


def _factor(value, what: str) -> int:
    try:
        factor = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be 1, 2 or 4, got {value!r}") from None
    if factor not in (1, 2, 4):
        raise ValueError(f"{what} must be 1, 2 or 4, got {value!r}")
    return factor


def _smallest_factor(value: float, target: float) -> int:
    """The smaller of 2 and 4 that lifts `value` to `target` (4 when neither does)."""
    return 2 if value * 2 >= target else 4


def plan_postprocess(
    options: dict | None, info: VideoInfo, sample_frames: np.ndarray | None, settings, detector=None
) -> PostPlan:
    """Decides which stages run. `detector` (a FaceDetector) is used for auto mode's face check;
    when None and auto mode needs it, the RetinaFace weights are loaded through the registry."""
    options = dict(options or {})
    mode = options.get("mode", "off")
    model = options.get("upscale_model") or DEFAULT_UPSCALE_MODEL
    if model not in UPSCALE_MODELS:
        raise ValueError(f"upscale_model must be one of {', '.join(UPSCALE_MODELS)}, got {model!r}")
    # The job's options carry null when the user left the fidelity to the studio's setting.
    chosen = options.get("codeformer_fidelity")
    fidelity = float(settings.codeformer_fidelity if chosen is None else chosen)
    if not 0.0 <= fidelity <= 1.0:
        raise ValueError(f"codeformer_fidelity must be between 0 and 1, got {fidelity}")
    plan = PostPlan(mode=mode, upscale_model=model, codeformer_fidelity=fidelity)

    if mode == "off":
        plan.reasons.append("Post-processing is off.")
        return plan
    if mode == "manual":
        plan.face_restore = bool(options.get("face_restore", False))
        plan.upscale = _factor(options.get("upscale", 1), "upscale")
        plan.interpolate = _factor(options.get("interpolate", 1), "interpolate")
        plan.reasons.append(
            f"Manual: face restore {'on' if plan.face_restore else 'off'}, "
            f"upscale x{plan.upscale}, interpolate x{plan.interpolate}, as chosen."
        )
        return plan
    if mode != "auto":
        raise ValueError(f"postprocess mode must be off, auto or manual, got {mode!r}")

    # Faces.
    samples = np.asarray(sample_frames) if sample_frames is not None else np.zeros((0, 1, 1, 3), np.uint8)
    if len(samples) == 0:
        plan.reasons.append("Face restore off: no frames to look at.")
    else:
        try:
            if detector is None:
                detector = build_detector(settings, _resolve_device(settings, "auto"))
            found = [len(faces) for faces in detector.detect(samples)]
        except MissingWeightError as exc:
            plan.reasons.append(f"Face restore off: the face detector is not available ({exc.text('en')})")
        else:
            with_faces = sum(1 for count in found if count)
            plan.face_restore = with_faces > 0
            if plan.face_restore:
                plan.reasons.append(f"Face restore on: faces found in {with_faces} of {len(found)} sampled frames.")
            else:
                plan.reasons.append(f"Face restore off: no face in {len(found)} sampled frames.")

    # Size: the short edge is what "1080p" measures.
    short = min(info.width, info.height)
    target = settings.upscale_target_edge
    if short >= target:
        plan.reasons.append(f"Upscale off: the short edge ({short} px) already reaches {target} px.")
    else:
        plan.upscale = _smallest_factor(short, target)
        reach = "reaches" if short * plan.upscale >= target else "comes closest to"
        plan.reasons.append(
            f"Upscale x{plan.upscale}: the short edge {short} px is below {target} px; "
            f"x{plan.upscale} ({short * plan.upscale} px) {reach} it."
        )

    # Motion smoothness.
    if info.fps >= TARGET_FPS:
        plan.reasons.append(f"Interpolation off: {info.fps:g} fps is already {TARGET_FPS:g} fps or more.")
    elif info.fps <= 0:
        plan.reasons.append("Interpolation off: the frame rate is unknown.")
    else:
        plan.interpolate = _smallest_factor(info.fps, TARGET_FPS)
        plan.reasons.append(
            f"Interpolate x{plan.interpolate}: {info.fps:g} fps is below {TARGET_FPS:g}; "
            f"gives {info.fps * plan.interpolate:g} fps."
        )
    return plan


# --- building the stages ---------------------------------------------------------------------


def _resolve_device(settings, device: str) -> str:
    import torch

    wanted = device if device != "auto" else getattr(settings, "device", "auto")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def _weight(name: str, settings, progress: ProgressCallback | None, stage: str) -> Path:
    try:
        return ensure_weight(name, settings, progress, stage=stage)
    except MissingWeightError as exc:
        raise PostprocessError(stage, exc) from exc


def build_detector(settings, device: str, progress: ProgressCallback | None = None):
    from backend.pipeline.face_restore import RetinaFaceDetector

    path = ensure_weight("retinaface-resnet50", settings, progress, stage="face_restore")
    return RetinaFaceDetector.from_checkpoint(path, device=device)


# What auto mode says when it drops a stage whose weights cannot be had, per stage.
SKIPPED_STAGE = {"face_restore": "stage_face_restore", "upscale": "stage_upscale", "interpolate": "stage_interpolate"}
_STAGE_OFF = {"face_restore": {"face_restore": False}, "upscale": {"upscale": 1}, "interpolate": {"interpolate": 1}}


def build_stages(plan: PostPlan, settings, device: str, progress: ProgressCallback | None, detector=None) -> dict:
    """Loads the models the plan needs. Missing weights fail the stage that needs them in manual
    mode (the user asked for it); auto mode only proposed the stage, so it drops it, says why in
    the report and as a job warning, and the video is still made."""
    stages: dict = {}
    for name in list(plan.stages):
        try:
            stages[name] = _build_stage(name, plan, settings, device, progress, detector)
        except PostprocessError as exc:
            if plan.mode != "auto":
                raise
            _skip(plan, name, progress, exc)
    return stages


def _skip(plan: PostPlan, name: str, progress: ProgressCallback | None, exc: PostprocessError) -> None:
    for key, value in _STAGE_OFF[name].items():
        setattr(plan, key, value)
    en = messages.render(SKIPPED_STAGE[name], "en")
    plan.reasons.append(f"{en}: {exc.cause_text('en')}")
    warning = messages.bilingual("stage_skipped", {"stage": messages.message(SKIPPED_STAGE[name])})
    if progress is not None:
        progress(Progress(name, 0.0, warning, {"warning": warning}))


def _build_stage(name: str, plan: PostPlan, settings, device: str, progress: ProgressCallback | None, detector):
    on_gpu = device.startswith("cuda")
    if name == "face_restore":
        from backend.pipeline.face_restore import CodeFormerRestorer, FaceRestorer

        if detector is None:
            try:
                detector = build_detector(settings, device, progress)
            except MissingWeightError as exc:
                raise PostprocessError("face_restore", exc) from exc
        path = _weight("codeformer", settings, progress, "face_restore")
        restorer = CodeFormerRestorer.from_checkpoint(
            path, fidelity=plan.codeformer_fidelity, device=device, half=on_gpu
        )
        return FaceRestorer(detector, restorer, device=device, batch_size=8 if on_gpu else 2)
    if name == "upscale":
        from backend.pipeline.upscaler import Upscaler

        path = _weight(plan.upscale_model, settings, progress, "upscale")
        return Upscaler.from_checkpoint(
            path,
            plan.upscale,
            device=device,
            half=on_gpu,
            tile=settings.upscale_tile,
            overlap=settings.upscale_tile_overlap,
            batch_size=4 if on_gpu else 1,
        )
    from backend.pipeline.interpolator import RifeInterpolator

    path = _weight(f"rife-{settings.rife_model}", settings, progress, "interpolate")
    return RifeInterpolator.from_checkpoint(
        path,
        plan.interpolate,
        device=device,
        half=on_gpu,
        scene_threshold=settings.scene_change_threshold,
        batch_size=8 if on_gpu else 2,
    )


def sample_frames(path: Path, info: VideoInfo, count: int = SAMPLE_FRAMES) -> np.ndarray:
    """Up to `count` frames spread evenly over the video, decoded in one streaming pass."""
    if info.frames <= 0:
        return np.zeros((0, info.height, info.width, 3), np.uint8)
    wanted = set(np.linspace(0, info.frames - 1, min(count, info.frames)).round().astype(int).tolist())
    picked, index = [], 0
    for chunk in iter_frames(path, chunk_size=16):
        for frame in chunk:
            if index in wanted:
                picked.append(frame)
            index += 1
    return np.stack(picked) if picked else np.zeros((0, info.height, info.width, 3), np.uint8)


# --- the chain -------------------------------------------------------------------------------


def run_postprocess(
    src: Path,
    dst: Path,
    options: dict,
    settings,
    progress: ProgressCallback,
    crf: int = 16,
    metadata: dict | None = None,
    device: str = "auto",
    detector=None,
) -> dict:
    """Runs the chain on `src` into `dst`; returns a JSON-able report of what ran and why."""
    started = time.monotonic()
    src, dst = Path(src), Path(dst)
    info = probe(src)
    device = _resolve_device(settings, device)
    samples = sample_frames(src, info) if (options or {}).get("mode") == "auto" else None
    plan = plan_postprocess(options, info, samples, settings, detector=detector)
    stages = build_stages(plan, settings, device, progress, detector=detector)

    chunk_size = max(1, int(settings.post_chunk_frames))
    chunks = max(1, -(-info.frames // chunk_size))
    fps_out = info.fps * plan.interpolate
    partial = dst.with_name(dst.stem + ".partial" + dst.suffix)
    written, out_w, out_h = 0, 0, 0

    def scoped(stage: str, done_chunks: int) -> ProgressCallback:
        # Maps a stage's progress within one chunk onto the whole video.
        def report(p: Progress) -> None:
            fraction = min(1.0, (done_chunks + p.fraction) / chunks)
            progress(Progress(stage, fraction, p.message, {**p.detail, "chunk": done_chunks + 1, "chunks": chunks}))

        return report

    try:
        with VideoWriter(partial, fps_out, crf=crf, metadata=metadata) as writer:
            for n, chunk in enumerate(iter_frames(src, chunk_size=chunk_size)):
                for name in ("face_restore", "upscale", "interpolate"):
                    if name in stages:
                        chunk = stages[name].process(chunk, scoped(name, n))
                if len(chunk):
                    writer.write(chunk)
                    written += len(chunk)
                    out_h, out_w = chunk.shape[1:3]
                progress(
                    Progress(
                        "encode", (n + 1) / chunks, "Encoding", {"frames": written, "chunk": n + 1, "chunks": chunks}
                    )
                )
        partial.replace(dst)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise

    report = {
        "mode": plan.mode,
        "stages": plan.stages,
        "reasons": plan.reasons,
        "plan": plan.to_dict(),
        "device": device,
        "input": {"width": info.width, "height": info.height, "fps": info.fps, "frames": info.frames},
        "output": {
            "width": out_w + (out_w % 2),  # the encoder pads odd sizes by one row/column
            "height": out_h + (out_h % 2),
            "fps": fps_out,
            "frames": written,
        },
        "seconds": round(time.monotonic() - started, 3),
    }
    if "face_restore" in stages:
        report["faces_restored"] = stages["face_restore"].faces_restored
    if "interpolate" in stages:
        report["scene_cuts"] = stages["interpolate"].cuts
    return report
