"""Scores of a take (one generated transition) and of a seam (the join of two takes), on the CPU.

numpy + OpenCV only; no model is loaded here. Every measure runs on a reduced copy of the frames:
the long edge is brought down to `WORK_EDGE` (256) px before anything else, so a take costs the same
at 640 or 1280 px and a clip never has to sit in memory at full size (`TakeScorer` takes chunks and
keeps only a few numbers per frame, plus the first and last frame at the working size). Motion
figures are reported in pixels per frame of the take's own size (working-size flow scaled back up).
Scores of takes compare when they are measured the same way: all from their mp4 files or all from
frames in memory (H.264 at crf 16 moves an anchor by about 1.5 ΔE and 0.03 SSIM).

What is measured, and why this way:

- **Adherence** (first frame vs the start image, last frame vs the target): SSIM on luma (structure;
  Wang et al. 2004 constants, 11x11 Gaussian window, sigma 1.5) and the mean CIE76 colour difference
  ΔE in CIELAB (colour; Lab is built to be roughly perceptually uniform, and one ΔE unit is about a
  just-noticeable step, so "ΔE 10" reads the same on any image). SSIM alone is blind to an overall
  colour or brightness drift, ΔE alone to a blur or a misplaced structure; the score is
  `0.5 * max(SSIM, 0) + 0.5 / (1 + ΔE / 10)` in 0..1. With an image embedder (OpenCLIP's
  `ImageAnalyzer` fits `ImageEmbedder`), the cosine of the embeddings is reported as `clip`;
  it is not in the overall score, so scores stay comparable whether a model is installed or not.
- **Arrival curve**: per frame f, `a(f) = d(S, f) / (d(S, f) + d(f, T))` with d the mean ΔE between
  blurred 64-px thumbnails. It is 0 on the start image, 1 on the target and, for any distance that is
  a norm, exactly t on the blend (1 - t)·S + t·T (so a linear cross-fade gives a straight line; in
  Lab it is straight up to the sRGB curve). It needs no projection axis, is bounded, and a frame far
  from both images reads about 0.5 instead of a wild value. Thumbnails make it see the layout and the
  colours, not the noise. Known limit: under pure camera motion an appearance distance saturates, so
  a pan bends the curve (fast rise at both ends); timing and abruptness still read correctly.
  When start and target are nearly the same picture (a loop, ΔE < 2) the curve is undefined and
  its weight is given to the others.
  From the curve: the first frame at or past 0.5 and 0.9 (`frame_50`, `frame_90`, with times), and
  `jump_share`, the largest rise within any `JUMP_WINDOW_S` (0.2 s). Flags:
  `abrupt` when `jump_share >= 0.5` (half the way in a fifth of a second), `late` when
  `t50 >= 0.6` (half the way only after 60 % of the clip), `static_then_jump` when both,
  `misses_target` when the last frame's arrival is below 0.8.
  Score: `0.6 * (1 - jump_share) + 0.4 * timeliness`, timeliness 1 for t50 in 0.35..0.65, falling
  linearly to 0 at t50 = 0 or 1.
- **Motion smoothness**: DIS dense optical flow (medium preset) between consecutive working-size
  frames, a 6-px border left out (content enters there and has nothing to match); per pair the
  mean flow magnitude (speed) and the luma residual after warping the next frame back by the flow.
  A pair whose residual exceeds `max(6 × the take's median, 10 levels)` is a **cut**: flow cannot
  explain it, whatever the motion is. Over the other pairs: `speed_cv` (std / mean of the speed) and
  `jerk` (mean |second difference of speed| / mean speed; 0 for constant or steadily changing speed),
  both against a floor of 0.2 working px/frame so a still clip's noise does not read as jerk.
  Score: `1 / (1 + jerk / 0.5)`, and 0 when the take has a cut; flag `jerky` when jerk >= 0.5
  (a pan alternating 2 and 6 px/frame reads about 2; a steady one below 0.02).
- **Holds** (frozen head / tail): a window of `HOLD_WINDOW_S` (0.2 s) is *still* when its two end
  thumbnails differ by less than `STILL_DELTA_E` (1 ΔE: under one just-noticeable step in a fifth
  of a second; a generator's grain reads about 0.2, a slow full cross-fade over 2.4 s about 4) and
  no pair inside it moves `MOTION_FLOOR` or more. The leading and trailing runs of still windows
  are the take's held head and tail (a window, not a frame pair, so a slow but steady change is not
  mistaken for a hold, and grain does not add up). Flags `frozen_head` / `frozen_tail` when a run
  covers `HOLD_SHARE` (30 %) of the clip and at least `HOLD_MIN_S` (0.5 s): most of the change
  then happens in the rest. A take whose windows are all still (a still pair made still) has no
  held part: being still is what was asked, and adherence says whether it should have moved.
  Score (`hold.score`) = 1 − held share (head + tail over the clip's frame pairs).
- **Overall** (0..100): `100 × (0.35 end + 0.10 start + 0.30 arrival + 0.25 motion)` of the
  scores above (weights renormalised when the arrival is undefined), times
  `1 − HOLD_WEIGHT × held share` (0.5): the adherence and arrival measures cannot see a clip that
  arrives early and then stands still (the arrival of a pan, or of a loop pair, says nothing),
  so a take that holds two thirds of its length loses a third of its score. Reaching the target is the point
  of a transition, so the end weighs most; how it gets there (arrival, smoothness) is next; the first
  frame is nearly always the start image (the engines start from it), so it weighs least.
- **Seam** (`score_seam`): the joined video keeps one copy of the shared keyframe (the next take's
  first frame, as `concatenator.SegmentJoiner` does). The mean flow fields over `SEAM_WINDOW_S`
  (0.2 s) before and after the join are compared: `direction_cosine` (magnitude-weighted cosine of
  the two fields; -1 is a full reversal, also for local motion), `motion_change` (mean |F_after -
  F_before|) against `inside_change` (the median change between consecutive pairs inside those
  windows). Flags: `reversal` (cosine < -0.5 with both sides moving at least 0.2 working px/frame),
  `discontinuous` (`change_ratio` > 3), `cut` (the pair across the join fails the cut test against
  the windows' pairs). Score `1 / (1 + max(0, change_ratio - 1) / 3)`, 0 at a cut.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from backend.utils.video_io import iter_frames, probe

WORK_EDGE = 256
THUMB_EDGE = 64
THUMB_SIGMA = 1.0
SSIM_SIGMA = 1.5
DELTA_E_HALF = 10.0  # the ΔE at which the colour term of adherence is one half

JUMP_WINDOW_S = 0.2
ABRUPT_SHARE = 0.5
LATE_T50 = 0.6
MISS_FINAL = 0.8
LOOP_DELTA_E = 2.0

CUT_RATIO = 6.0
CUT_MIN_LEVELS = 10.0
MOTION_FLOOR = 0.2  # working px / frame
JERK_SCALE = 0.5
JERKY = 0.5  # jerk at which the smoothness score is one half

SEAM_WINDOW_S = 0.2
REVERSAL_COSINE = -0.5
SEAM_RATIO = 3.0
SEAM_SCALE = 3.0

HOLD_WINDOW_S = 0.2
STILL_DELTA_E = 1.0  # thumbnail ΔE across a hold window below which it is still
HOLD_SHARE = 0.3  # a held head or tail this share of the clip is flagged
HOLD_MIN_S = 0.5  # ... and this long (a short clip's few end frames are not a hold)
HOLD_WEIGHT = 0.5  # overall × (1 − HOLD_WEIGHT × held share)

VERSION = 2  # stored with every score: a change of formula or threshold bumps it

WEIGHTS = {"end": 0.35, "start": 0.10, "arrival": 0.30, "motion": 0.25}

_BORDER = 6  # working px left out of speeds and residuals: content entering there has no match


class ImageEmbedder(Protocol):
    """What the scores need of an image model: L2-normalised embeddings, one row per image.
    `backend.jobs.analyzers.image_analyzer.ImageAnalyzer` implements it."""

    def embed_images(self, images: Sequence) -> np.ndarray: ...


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Adherence:
    ssim: float  # luma SSIM, 1 = same structure
    delta_e: float  # mean CIE76 ΔE, 0 = same colours
    score: float  # 0..1
    clip: float | None = None  # embedding cosine, when an embedder was given


@dataclass(frozen=True)
class Arrival:
    defined: bool  # False when start and target are nearly the same picture
    curve: tuple[float, ...]  # per frame, 0 = start image, 1 = target
    frame_50: int | None
    frame_90: int | None
    time_50_s: float | None
    time_90_s: float | None
    t50: float | None  # frame_50 as a share of the clip's length
    final: float
    jump_share: float  # the largest rise within JUMP_WINDOW_S
    jump_frame: int | None  # the frame ending the largest single-frame rise
    late: bool
    abrupt: bool
    static_then_jump: bool
    misses_target: bool
    score: float | None


@dataclass(frozen=True)
class Motion:
    speed_px: tuple[float, ...]  # per consecutive pair, px / frame at the take's size
    mean_speed_px: float
    max_speed_px: float
    speed_cv: float
    jerk: float
    cuts: tuple[int, ...]  # frames that open a new shot (the later frame of each cut pair)
    residual_median: float  # luma levels (0..255) left after motion compensation
    residual_max: float
    score: float


@dataclass(frozen=True)
class Hold:
    head_frames: int  # frame pairs held still at the start
    tail_frames: int  # frame pairs held still at the end
    head_s: float
    tail_s: float
    held_share: float  # (head + tail) / frame pairs, 0..1
    still: bool  # every window is still: the whole take stands (not a hold)
    frozen_head: bool
    frozen_tail: bool
    score: float  # 1 - held_share


@dataclass(frozen=True)
class TakeScore:
    version: int
    frames: int
    fps: float
    width: int
    height: int
    work_width: int
    work_height: int
    start: Adherence
    end: Adherence
    arrival: Arrival
    motion: Motion
    hold: Hold
    overall: float  # 0..100
    flags: tuple[str, ...]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["flags"] = list(self.flags)
        out["arrival"]["curve"] = list(self.arrival.curve)
        out["motion"]["speed_px"] = list(self.motion.speed_px)
        out["motion"]["cuts"] = list(self.motion.cuts)
        return out

    def summary(self) -> dict:
        """The few numbers that fit a list row or an mp4 metadata tag (no per-frame series)."""
        return {
            "version": self.version,
            "overall": self.overall,
            "end_ssim": self.end.ssim,
            "end_delta_e": self.end.delta_e,
            "end_clip": self.end.clip,
            "start_ssim": self.start.ssim,
            "t50": self.arrival.t50,
            "time_50_s": self.arrival.time_50_s,
            "time_90_s": self.arrival.time_90_s,
            "jump_share": self.arrival.jump_share,
            "jerk": self.motion.jerk,
            "held_share": self.hold.held_share,
            "cuts": list(self.motion.cuts),
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class SeamScore:
    version: int
    speed_before_px: float
    speed_after_px: float
    direction_cosine: float | None  # None when either side is (nearly) still
    motion_change_px: float
    inside_change_px: float
    change_ratio: float
    across_residual: float
    reversal: bool
    discontinuous: bool
    cut: bool
    score: float  # 0..1
    flags: tuple[str, ...]

    def to_dict(self) -> dict:
        out = asdict(self)
        out["flags"] = list(self.flags)
        return out


# --- image helpers ------------------------------------------------------------------------------
def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (n, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def work_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, WORK_EDGE / max(width, height))
    return max(16, round(width * scale)), max(16, round(height * scale))


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """An anchor image brought to the frames' size: centre-cropped to their aspect, then resized
    (the preprocessor's `crop` rule; anchors are normally given at the frames' size already)."""
    image = _check_frames(image)[0]
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    crop_w = min(w, round(h * width / height))
    crop_h = min(h, round(w * height / width))
    x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
    image = np.ascontiguousarray(image[y0 : y0 + crop_h, x0 : x0 + crop_w])
    interp = cv2.INTER_AREA if crop_w > width else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interp)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L 0..100) of sRGB uint8 pixels; OpenCV's float path linearises sRGB first."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _thumb(work_rgb: np.ndarray) -> np.ndarray:
    h, w = work_rgb.shape[:2]
    scale = THUMB_EDGE / max(h, w)
    size = (max(4, round(w * scale)), max(4, round(h * scale)))
    small = cv2.resize(work_rgb, size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(_lab(small), (0, 0), THUMB_SIGMA)


def _delta_e(lab_a: np.ndarray, lab_b: np.ndarray) -> float:
    return float(np.sqrt(((lab_a - lab_b) ** 2).sum(axis=-1)).mean())


def ssim(gray_a: np.ndarray, gray_b: np.ndarray) -> float:
    """Mean SSIM of two luma images (uint8 or float in 0..255)."""
    a = gray_a.astype(np.float32)
    b = gray_b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), SSIM_SIGMA)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return float((num / den).mean())


def adherence(frame_work: np.ndarray, anchor_work: np.ndarray) -> tuple[float, float, float]:
    """(SSIM, ΔE, score) of two working-size RGB images."""
    s = ssim(_luma(frame_work), _luma(anchor_work))
    de = _delta_e(_lab(frame_work), _lab(anchor_work))
    score = 0.5 * max(s, 0.0) + 0.5 / (1.0 + de / DELTA_E_HALF)
    return s, de, score


def _flow_estimator():
    """DIS (Kroeger et al. 2016), medium preset: on known shifts of a real photo it lands within
    1 % of the true speed at about two thirds of Farneback's time; Farneback read 2–4 % low there.
    One estimator per scorer: OpenCV's object keeps state and is not to be shared across threads."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def _flow(estimator, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
    """F with prev(x) ≈ next(x + F(x)), working px."""
    return estimator.calc(prev_gray, next_gray, None)


class _Grid:
    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        if (h, w) not in self._cache:
            self._cache[(h, w)] = tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
        return self._cache[(h, w)]


_grid = _Grid()


def _residual(prev_gray: np.ndarray, next_gray: np.ndarray, flow: np.ndarray) -> float:
    """Mean luma difference left once the next frame is pulled back along the flow."""
    h, w = prev_gray.shape
    gx, gy = _grid(h, w)
    warped = cv2.remap(
        next_gray, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return float(_inner(cv2.absdiff(warped, prev_gray)).mean())


def _inner(field: np.ndarray) -> np.ndarray:
    """The field less a border, where content enters or leaves and flow has nothing to match."""
    h, w = field.shape[:2]
    return field[_BORDER:-_BORDER, _BORDER:-_BORDER] if min(h, w) > 4 * _BORDER else field


def _speed(flow: np.ndarray) -> float:
    return float(np.sqrt((_inner(flow) ** 2).sum(axis=-1)).mean())


def _cut_mask(residuals: np.ndarray) -> np.ndarray:
    if len(residuals) == 0:
        return np.zeros(0, bool)
    limit = max(CUT_RATIO * float(np.median(residuals)), CUT_MIN_LEVELS)
    return residuals > limit


# --- the take -----------------------------------------------------------------------------------
class TakeScorer:
    """Scores a take fed in chunks (`add`), then `finish()`; memory stays a few numbers per frame."""

    def __init__(
        self, start: np.ndarray, target: np.ndarray, fps: float, embedder: ImageEmbedder | None = None
    ) -> None:
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        self.embedder = embedder
        self._estimator = _flow_estimator()
        self._start_src = _check_frames(start)[0]
        self._target_src = _check_frames(target)[0]
        self._size: tuple[int, int] | None = None  # (W, H) of the take
        self._work: tuple[int, int] | None = None
        self._d_start: list[float] = []
        self._d_target: list[float] = []
        self._speeds: list[float] = []
        self._residuals: list[float] = []
        self._recent: deque[tuple[np.ndarray, float]] = deque()  # (thumb, speed into it) of a window
        self._window_still: list[bool] = []  # per hold window, in order
        self._prev_gray: np.ndarray | None = None
        self._first: np.ndarray | None = None  # full size, kept only for the embedder
        self._last: np.ndarray | None = None
        self._first_work: np.ndarray | None = None
        self._last_work: np.ndarray | None = None

    def _setup(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._work = work_size(width, height)
        self._start = _fit(self._start_src, width, height)
        self._target = _fit(self._target_src, width, height)
        self._start_work = _resize(self._start, self._work)
        self._target_work = _resize(self._target, self._work)
        self._start_thumb = _thumb(self._start_work)
        self._target_thumb = _thumb(self._target_work)

    def add(self, frames: np.ndarray) -> None:
        frames = _check_frames(frames)
        if self._size is None:
            self._setup(frames.shape[2], frames.shape[1])
        if (frames.shape[2], frames.shape[1]) != self._size:
            raise ValueError(
                f"frame size {frames.shape[2]}x{frames.shape[1]} differs from the take's "
                f"{self._size[0]}x{self._size[1]}"
            )
        for frame in frames:
            work = _resize(frame, self._work)
            thumb = _thumb(work)
            self._d_start.append(_delta_e(thumb, self._start_thumb))
            self._d_target.append(_delta_e(thumb, self._target_thumb))
            gray = _luma(work)
            speed = 0.0
            if self._prev_gray is not None:
                flow = _flow(self._estimator, self._prev_gray, gray)
                speed = _speed(flow)
                self._speeds.append(speed)
                self._residuals.append(_residual(self._prev_gray, gray, flow))
            self._hold_window(thumb, speed)
            if self._prev_gray is None:
                self._first_work = work.copy()
                if self.embedder is not None:
                    self._first = frame.copy()
            self._prev_gray = gray
            self._last_work = work
        if self.embedder is not None:
            self._last = frames[-1].copy()

    def _hold_window(self, thumb: np.ndarray, speed: float) -> None:
        """Keeps only the thumbnails of one hold window; records whether the window ending on this
        frame is still."""
        w = max(1, round(HOLD_WINDOW_S * self.fps))
        self._recent.append((thumb, speed))
        if len(self._recent) > w + 1:
            self._recent.popleft()
        if len(self._recent) == w + 1:
            first = self._recent[0][0]
            moved = max(s for _, s in list(self._recent)[1:])
            self._window_still.append(_delta_e(thumb, first) < STILL_DELTA_E and moved < MOTION_FLOOR)

    def _hold(self, n: int) -> Hold:
        pairs = n - 1
        still = self._window_still
        w = max(1, round(HOLD_WINDOW_S * self.fps))
        head = tail = 0
        all_still = bool(still) and all(still)
        if still and not all_still:
            lead = next(i for i, x in enumerate(still) if not x)  # windows 0..lead-1 are still
            trail = next(i for i, x in enumerate(reversed(still)) if not x)
            # Window k spans frames k..k+w: a run of r still windows holds r + w - 1 pairs.
            head = lead + w - 1 if lead else 0
            tail = trail + w - 1 if trail else 0
        held = min(1.0, (head + tail) / pairs) if pairs else 0.0
        least = max(HOLD_SHARE * pairs, HOLD_MIN_S * self.fps)
        return Hold(
            head_frames=head,
            tail_frames=tail,
            head_s=_r(head / self.fps, 3),
            tail_s=_r(tail / self.fps, 3),
            held_share=_r(held),
            still=all_still,
            frozen_head=bool(head and head >= least),
            frozen_tail=bool(tail and tail >= least),
            score=_r(1.0 - held),
        )

    def finish(self) -> TakeScore:
        n = len(self._d_start)
        if n < 2:
            raise ValueError(f"a take needs at least 2 frames, got {n}")
        width, height = self._size
        scale = width / self._work[0]  # working px → the take's px

        s_ssim, s_de, s_score = adherence(self._first_work, self._start_work)
        e_ssim, e_de, e_score = adherence(self._last_work, self._target_work)
        s_clip = e_clip = None
        if self.embedder is not None:
            s_clip, e_clip = self._clip()
        start = Adherence(_r(s_ssim), _r(s_de, 3), _r(s_score), _r(s_clip))
        end = Adherence(_r(e_ssim), _r(e_de, 3), _r(e_score), _r(e_clip))
        arrival = self._arrival(n)
        motion = self._motion(scale)
        hold = self._hold(n)

        parts = {"end": end.score, "start": start.score, "arrival": arrival.score, "motion": motion.score}
        used = {k: v for k, v in parts.items() if v is not None}
        overall = 100.0 * sum(WEIGHTS[k] * v for k, v in used.items()) / sum(WEIGHTS[k] for k in used)
        overall *= 1.0 - HOLD_WEIGHT * hold.held_share
        flags = [
            name
            for name, on in (
                ("static_then_jump", arrival.static_then_jump),
                ("late", arrival.late),
                ("abrupt", arrival.abrupt),
                ("misses_target", arrival.misses_target),
                ("cut", bool(motion.cuts)),
                ("jerky", motion.jerk >= JERKY),
                ("frozen_head", hold.frozen_head),
                ("frozen_tail", hold.frozen_tail),
            )
            if on
        ]
        return TakeScore(
            version=VERSION,
            frames=n,
            fps=self.fps,
            width=width,
            height=height,
            work_width=self._work[0],
            work_height=self._work[1],
            start=start,
            end=end,
            arrival=arrival,
            motion=motion,
            hold=hold,
            overall=round(overall, 2),
            flags=tuple(flags),
        )

    def _clip(self) -> tuple[float, float]:
        from PIL import Image

        images = [Image.fromarray(x) for x in (self._first, self._start, self._last, self._target)]
        emb = np.asarray(self.embedder.embed_images(images), dtype=np.float64)

        def cos(a, b):
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            return float(np.dot(a, b) / (na * nb)) if na and nb else 0.0

        return cos(emb[0], emb[1]), cos(emb[2], emb[3])

    def _arrival(self, n: int) -> Arrival:
        d_s = np.asarray(self._d_start)
        d_t = np.asarray(self._d_target)
        span = _delta_e(self._start_thumb, self._target_thumb)
        if span < LOOP_DELTA_E:
            return Arrival(
                False, tuple(), None, None, None, None, None, 1.0, 0.0, None, False, False, False, False, None
            )
        total = d_s + d_t
        curve = np.where(total > 0, d_s / np.maximum(total, 1e-9), 1.0)
        last = n - 1

        def first_at(level: float) -> int | None:
            hits = np.nonzero(curve >= level)[0]
            return int(hits[0]) if len(hits) else None

        f50, f90 = first_at(0.5), first_at(0.9)
        window = int(min(max(1, round(JUMP_WINDOW_S * self.fps)), last))
        rises = curve[window:] - curve[:-window]
        jump_share = float(max(0.0, rises.max()))
        steps = np.diff(curve)
        jump_frame = int(np.argmax(steps)) + 1
        t50 = f50 / last if f50 is not None else None
        late = t50 is None or t50 >= LATE_T50
        abrupt = jump_share >= ABRUPT_SHARE
        final = float(curve[-1])
        if t50 is None:
            timeliness = 0.0
        else:
            timeliness = 1.0 - float(np.clip((abs(t50 - 0.5) - 0.15) / 0.35, 0.0, 1.0))
        score = 0.6 * (1.0 - jump_share) + 0.4 * timeliness
        return Arrival(
            defined=True,
            curve=tuple(round(float(x), 4) for x in curve),
            frame_50=f50,
            frame_90=f90,
            time_50_s=_r(f50 / self.fps if f50 is not None else None, 3),
            time_90_s=_r(f90 / self.fps if f90 is not None else None, 3),
            t50=_r(t50),
            final=_r(final),
            jump_share=_r(jump_share),
            jump_frame=jump_frame,
            late=bool(late),
            abrupt=bool(abrupt),
            static_then_jump=bool(late and abrupt),
            misses_target=bool(final < MISS_FINAL),
            score=_r(score),
        )

    def _motion(self, scale: float) -> Motion:
        speeds = np.asarray(self._speeds)
        residuals = np.asarray(self._residuals)
        cut = _cut_mask(residuals)
        cuts = tuple(int(i) + 1 for i in np.nonzero(cut)[0])
        clean = speeds[~cut]
        mean = float(clean.mean()) if len(clean) else 0.0
        base = max(mean, MOTION_FLOOR)
        # Second differences only over runs that no cut interrupts.
        second = [
            speeds[k + 2] - 2 * speeds[k + 1] + speeds[k] for k in range(len(speeds) - 2) if not cut[k : k + 3].any()
        ]
        jerk = float(np.abs(second).mean()) / base if second else 0.0
        cv = float(clean.std()) / base if len(clean) else 0.0
        score = 0.0 if cuts else 1.0 / (1.0 + jerk / JERK_SCALE)
        return Motion(
            speed_px=tuple(round(float(s) * scale, 3) for s in speeds),
            mean_speed_px=_r(mean * scale, 3),
            max_speed_px=_r(float(clean.max()) * scale if len(clean) else 0.0, 3),
            speed_cv=_r(cv),
            jerk=_r(jerk),
            cuts=cuts,
            residual_median=_r(float(np.median(residuals)), 3),
            residual_max=_r(float(residuals.max()), 3),
            score=_r(score),
        )


def score_take(
    frames: np.ndarray, start: np.ndarray, target: np.ndarray, fps: float, embedder: ImageEmbedder | None = None
) -> TakeScore:
    """Scores one take held in memory: `frames` (n, H, W, 3) uint8, anchors (H, W, 3) uint8."""
    scorer = TakeScorer(start, target, fps, embedder)
    scorer.add(frames)
    return scorer.finish()


def score_take_file(
    path: Path | str,
    start: np.ndarray,
    target: np.ndarray,
    fps: float | None = None,
    embedder: ImageEmbedder | None = None,
) -> TakeScore:
    """Scores a take's video file, decoded in chunks (the rate is the file's unless given)."""
    scorer = TakeScorer(start, target, fps or probe(path).fps, embedder)
    for chunk in iter_frames(path, chunk_size=16):
        scorer.add(chunk)
    return scorer.finish()


# --- the seam -----------------------------------------------------------------------------------
def seam_pairs(fps: float) -> int:
    """How many frame pairs on each side of a join the seam looks at."""
    return max(2, round(SEAM_WINDOW_S * fps))


def _works(frames: Iterable[np.ndarray]) -> list[np.ndarray]:
    out = []
    size = None
    for frame in frames:
        if size is None:
            size = work_size(frame.shape[1], frame.shape[0])
        out.append(_luma(_resize(frame, size)))
    return out


def score_seam(
    frames_before: np.ndarray, frames_after: np.ndarray, fps: float, shared_keyframe: bool = True
) -> SeamScore:
    """The join of two takes. `frames_before`: the end of the earlier take (at least
    `seam_pairs(fps) + 2` frames; more are ignored), `frames_after`: the start of the next (at
    least `seam_pairs(fps) + 1`). With `shared_keyframe` the earlier take's last frame is dropped,
    as the joined video drops it."""
    before = _check_frames(frames_before)
    after = _check_frames(frames_after)
    if before.shape[1:] != after.shape[1:]:
        raise ValueError(f"both takes must have one size, got {before.shape[1:]} and {after.shape[1:]}")
    k = seam_pairs(fps)
    if shared_keyframe:
        before = before[:-1]
    if len(before) < 2 or len(after) < 2:
        raise ValueError("a seam needs at least 2 frames on each side")
    k = min(k, len(before) - 1, len(after) - 1)
    width = before.shape[2]
    gray_b = _works(before[-(k + 1) :])
    gray_a = _works(after[: k + 1])
    scale = width / gray_b[0].shape[1]
    return _seam(gray_b, gray_a, scale)


def _seam(gray_b: list[np.ndarray], gray_a: list[np.ndarray], scale: float) -> SeamScore:
    estimator = _flow_estimator()
    residuals: list[float] = []

    def flows(grays: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for p, q in zip(grays, grays[1:]):
            field = _flow(estimator, p, q)
            residuals.append(_residual(p, q, field))
            out.append(_inner(field))
        return out

    flows_b, flows_a = flows(gray_b), flows(gray_a)
    across = _flow(estimator, gray_b[-1], gray_a[0])
    across_residual = _residual(gray_b[-1], gray_a[0], across)
    limit = max(CUT_RATIO * float(np.median(residuals)), CUT_MIN_LEVELS)
    cut = across_residual > limit

    def magnitude(field: np.ndarray) -> float:
        return float(np.sqrt((field**2).sum(axis=-1)).mean())

    mean_b = np.mean(flows_b, axis=0)
    mean_a = np.mean(flows_a, axis=0)
    speed_b, speed_a = magnitude(mean_b), magnitude(mean_a)
    change = magnitude(mean_a - mean_b)
    inside = [magnitude(g - f) for side in (flows_b, flows_a) for f, g in zip(side, side[1:])]
    inside_change = float(np.median(inside)) if inside else 0.0
    denom = max(inside_change, 0.1 * (speed_a + speed_b) / 2, MOTION_FLOOR / 2)
    ratio = change / denom
    cosine = None
    if speed_b >= MOTION_FLOOR and speed_a >= MOTION_FLOOR:
        dot = float((mean_b * mean_a).sum())
        norm = float(np.sqrt((mean_b**2).sum() * (mean_a**2).sum()))
        cosine = dot / norm if norm else 0.0
    reversal = cosine is not None and cosine < REVERSAL_COSINE
    discontinuous = ratio > SEAM_RATIO
    score = 0.0 if cut else 1.0 / (1.0 + max(0.0, ratio - 1.0) / SEAM_SCALE)
    flags = tuple(name for name, on in (("reversal", reversal), ("discontinuous", discontinuous), ("cut", cut)) if on)
    return SeamScore(
        version=VERSION,
        speed_before_px=_r(speed_b * scale, 3),
        speed_after_px=_r(speed_a * scale, 3),
        direction_cosine=_r(cosine),
        motion_change_px=_r(change * scale, 3),
        inside_change_px=_r(inside_change * scale, 3),
        change_ratio=_r(ratio, 3),
        across_residual=_r(across_residual, 3),
        reversal=bool(reversal),
        discontinuous=bool(discontinuous),
        cut=bool(cut),
        score=_r(score),
        flags=flags,
    )


def score_seam_files(
    path_before: Path | str, path_after: Path | str, fps: float | None = None, shared_keyframe: bool = True
) -> SeamScore:
    """`score_seam` of two take files: only the earlier take's tail and the next take's head are
    kept (the tail by decoding through the file, the head by stopping early)."""
    rate = fps or probe(path_before).fps
    k = seam_pairs(rate)
    tail: deque[np.ndarray] = deque(maxlen=k + 2)
    for chunk in iter_frames(path_before, chunk_size=16):
        tail.extend(chunk)
    head: list[np.ndarray] = []
    chunks = iter_frames(path_after, chunk_size=k + 1)
    try:
        for chunk in chunks:
            head.extend(chunk)
            if len(head) >= k + 1:
                break
    finally:
        chunks.close()
    if not tail or not head:
        raise ValueError("a seam needs frames on both sides")
    return score_seam(np.stack(tail), np.stack(head[: k + 1]), rate, shared_keyframe)
