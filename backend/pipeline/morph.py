"""The instant preview engine: a flow-warped cross-dissolve between two images, on the CPU, no weights.

Dense optical flow (Farneback) is computed both ways between the pair. Frame t warps the first image
forward by t of the flow and the second image backward by (1 - t), then dissolves between them. At
t = 0 the blend weight of the second image is 0 and the first image is unwarped, so the first frame
is exactly the first image; the last frame is exactly the second image. Eased timing keeps the
motion soft at both ends, like a camera settling.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from backend.contracts.engine_specs import EngineSpec, Licence, SliderEffect
from backend.contracts.errors import JobError
from backend.pipeline.framepack import spec as framepack_spec
from backend.utils.progress import Progress, ProgressCallback, ignore_progress

# Morph can make any count of at least 2 frames, but it is the preview of a FramePack storyboard:
# it lays lengths on FramePack's 36-frame sections at 30 fps, so a storyboard checked with morph has
# the frame counts FramePack will give it. It reads FramePack's spec only, never its weights.
SPEC = EngineSpec(
    name="morph",
    label="engine_label_morph",
    licence=Licence(name="licence_name_studio", url=None, excluded=(), note="licence_note_morph"),
    disk_gb=0,
    memory=(),  # the CPU alone: no GPU, no weights
    native_fps=framepack_spec.NATIVE_FPS,
    frames=framepack_spec.FRAMES,
    sliders=(
        SliderEffect(
            slider="seconds",
            param="frames",
            rule=f"sections × {framepack_spec.FRAMES_PER_SECTION} + 1, sections as FramePack's",
            span=None,
        ),
    ),
)

# Flow is estimated at about this edge and scaled up: detail beyond it only costs time.
FLOW_EDGE = 384


def _flow(src_gray: np.ndarray, dst_gray: np.ndarray) -> np.ndarray:
    """Flow field F with dst(x + F(x)) ≈ src(x), at full size."""
    h, w = src_gray.shape
    scale = min(1.0, FLOW_EDGE / max(h, w))
    if scale < 1.0:
        size = (max(8, int(w * scale)), max(8, int(h * scale)))
        small_src = cv2.resize(src_gray, size, interpolation=cv2.INTER_AREA)
        small_dst = cv2.resize(dst_gray, size, interpolation=cv2.INTER_AREA)
    else:
        small_src, small_dst = src_gray, dst_gray
    flow = cv2.calcOpticalFlowFarneback(
        small_src,
        small_dst,
        None,
        pyr_scale=0.5,
        levels=4,
        winsize=21,
        iterations=4,
        poly_n=7,
        poly_sigma=1.5,
        flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
    )
    if scale < 1.0:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / scale
    return flow.astype(np.float32)


def _warp(image: np.ndarray, flow: np.ndarray, amount: float, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Backward warp: out(x) = image(x - amount · flow(x))."""
    gx, gy = grid
    map_x = gx - amount * flow[..., 0]
    map_y = gy - amount * flow[..., 1]
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _ease(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


def morph_transition(
    first: np.ndarray,
    last: np.ndarray,
    frames: int,
    progress: ProgressCallback = ignore_progress,
    end_influence: float = 1.0,
) -> np.ndarray:
    """`frames` frames (uint8, (n, H, W, 3)) from `first` to `last`, both (H, W, 3) uint8.

    `end_influence` below 1 bends the timing to t ** (1 / influence): the last image takes over
    later, pulling less through the middle, yet the last frame is still exactly it (the next
    transition starts there). 1.0 is the curve as it always was."""
    if first.shape != last.shape:
        raise ValueError(f"both images must have one size, got {first.shape} and {last.shape}")
    if frames < 2:
        raise ValueError("a transition needs at least 2 frames")
    h, w = first.shape[:2]
    gray_a = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY)
    gray_b = cv2.cvtColor(last, cv2.COLOR_RGB2GRAY)
    # flow_ab(x): where pixel x of A moves to in B; used to pull A forward and B backward.
    flow_ab = _flow(gray_a, gray_b)
    flow_ba = _flow(gray_b, gray_a)
    grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    a = first.astype(np.float32)
    b = last.astype(np.float32)

    out = np.empty((frames, h, w, 3), dtype=np.uint8)
    for i in range(frames):
        t = _ease(i / (frames - 1))
        if end_influence != 1.0:
            t = t ** (1.0 / end_influence)
        if i == 0:
            out[i] = first
        elif i == frames - 1:
            out[i] = last
        else:
            warped_a = _warp(a, flow_ab, t, grid)
            warped_b = _warp(b, flow_ba, 1.0 - t, grid)
            out[i] = np.clip((1.0 - t) * warped_a + t * warped_b + 0.5, 0, 255).astype(np.uint8)
        progress(Progress("generate", (i + 1) / frames, detail={"step": i + 1, "steps": frames}))
    return out


class MorphEngine:
    """Engine interface shared with the FramePack engine."""

    name = "morph"
    spec = SPEC

    def describe(self) -> dict:
        return {"ready": True, "loaded": True, "reason": "CPU optical-flow preview, no weights"}

    def generate(
        self,
        first: np.ndarray,
        last: np.ndarray,
        prompt: str,
        segment: dict,
        params: dict,
        progress: ProgressCallback,
        keyframes: Sequence[np.ndarray] = (),
    ) -> np.ndarray:
        if keyframes:  # the job layer refuses them for morph; a stored plan that has some is not ignored
            raise JobError("engine_no_keyframes", engine=self.name, n=int(segment.get("pair", 0)) + 1)
        return morph_transition(first, last, segment["frames"], progress, float(segment.get("end_influence", 1.0)))

    def release(self) -> None:
        """Nothing to free."""
