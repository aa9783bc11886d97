"""One Wan transition from a loaded pipeline: the diffusers `__call__` half of the engine.

The call is diffusers' own `WanImageToVideoPipeline(image=first, last_image=last, …)`; the studio
adds only what it needs around it:
- every denoising step is reported through `callback_on_step_end` (`sampling_progress`), so a
  cancel (the callback raising `JobCancelled`) stops the sampler within one step; there is no
  live preview (it would cost a VAE decode of all frames per step);
- the seed is a CPU generator, so a take is the same on any device;
- frames come back as uint8 at the job's bucket size;
- keyframes inside the transition (`segment["keyframes"]`) enter the first–last-frame condition at
  their latent frames (`wan_keyframes.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backend.contracts import messages
from backend.pipeline.sampling_progress import SamplingProgress
from backend.pipeline.wan import wan_spec as spec
from backend.pipeline.wan.wan_keyframes import keyframes_in
from backend.utils.progress import ProgressCallback


def to_uint8(video: np.ndarray) -> np.ndarray:
    """diffusers' float frames in [0, 1] → uint8, rounded."""
    return np.clip(np.round(video * 255.0), 0, 255).astype(np.uint8)


def fit_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Frames at the bucket's size (the pipeline floors odd sizes to multiples of 16)."""
    if frames.shape[1:3] == (height, width):
        return frames
    import cv2

    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in frames])


def call_arguments(segment: dict, params: dict, height: int, width: int) -> dict:
    """The pipeline's keyword arguments for one take (besides images, prompt and callback)."""
    import torch

    return {
        "height": height - height % spec.SPATIAL_MULTIPLE,
        "width": width - width % spec.SPATIAL_MULTIPLE,
        "num_frames": int(segment["frames"]),
        "num_inference_steps": int(params["steps"]),
        "guidance_scale": float(params["guidance"]),
        "generator": torch.Generator("cpu").manual_seed(int(segment["seed"])),
        "output_type": "np",
    }


def sample_transition(
    pipe,
    first: np.ndarray,
    last: np.ndarray,
    prompt: str,
    segment: dict,
    params: dict,
    progress: ProgressCallback,
    keyframes: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """(frames, H, W, 3) uint8 from `first` to `last` (both (H, W, 3) uint8, one size); `keyframes`
    are the images of `segment["keyframes"]`, in its order."""
    import torch
    from PIL import Image

    if first.shape != last.shape:
        raise ValueError(f"both images must have one size, got {first.shape} and {last.shape}")
    frames = int(segment["frames"])
    if not spec.is_frame_count(frames):
        raise ValueError(f"Wan makes 4k+1 frames, not {frames}")
    height, width = first.shape[:2]
    steps = int(params["steps"])
    report = SamplingProgress(progress, 1, steps)
    if segment.get("capped"):
        report.warning(
            messages.bilingual(
                "wan_length_capped",
                {
                    "seconds": messages.num(float(segment.get("asked_seconds", 0))),
                    "max": messages.num(frames / spec.NATIVE_FPS),
                },
            )
        )

    def on_step_end(_pipe, step: int, _timestep, kwargs: dict) -> dict:
        report.step(0, step)  # raises JobCancelled when the job is cancelled
        return kwargs

    points = [int(k["point"]) for k in segment.get("keyframes") or []]
    with torch.no_grad(), keyframes_in(pipe, keyframes, points):
        video = pipe(
            image=Image.fromarray(first),
            last_image=Image.fromarray(last),
            prompt=prompt,
            callback_on_step_end=on_step_end,
            **call_arguments(segment, params, height, width),
        ).frames[0]
    return fit_frames(to_uint8(np.asarray(video)), height, width)
