"""Takes whose right scores are known by construction, cut from one real photo (grace_hopper.jpg).

All are 320x240 at 30 fps, 72 frames (2.4 s, a typical transition). The start image is a window of
the photo around her face, the target a window of the lower part (another picture). Windows move by
whole pixels, so a pan of `dx` px/frame is exactly that motion in the frames.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from tests.helpers.photos import grace_hopper

W, H, N, FPS = 320, 240, 72, 30.0
START_XY = (20, 150)
TARGET_XY = (300, 450)


@lru_cache(maxsize=1)
def photo() -> np.ndarray:
    """The photo at 640x750: room for a 320x240 window to travel 300 px either way."""
    return cv2.resize(grace_hopper(), (640, 750), interpolation=cv2.INTER_AREA)


def window(x: float, y: float = START_XY[1]) -> np.ndarray:
    x, y = int(round(x)), int(round(y))
    return np.ascontiguousarray(photo()[y : y + H, x : x + W])


def start_image() -> np.ndarray:
    return window(*START_XY)


def target_image() -> np.ndarray:
    return window(*TARGET_XY)


def shifted(image: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    """The image moved by a sub-pixel (dx, dy): content at x goes to x + dx."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(
        image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return np.clip((1.0 - t) * a.astype(np.float32) + t * b.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)


def _noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 1.5) -> np.ndarray:
    """A generator never holds a frame bit-exact; this is the grain of a held frame."""
    return np.clip(image.astype(np.float32) + rng.normal(0.0, sigma, image.shape), 0, 255).astype(np.uint8)


def crossfade(n: int = N, until: float = 1.0) -> np.ndarray:
    """Linear cross-fade start → target (`until` < 1 stops short of the target)."""
    s, t = start_image(), target_image()
    return np.stack([blend(s, t, until * i / (n - 1)) for i in range(n)])


def ease_in(n: int = N) -> np.ndarray:
    """A cross-fade that is late but smooth: the blend weight is t³."""
    s, t = start_image(), target_image()
    return np.stack([blend(s, t, (i / (n - 1)) ** 3) for i in range(n)])


def hold_then_jump(n: int = N, hold: int = 66) -> np.ndarray:
    """The field's complaint: the start held (with grain) for `hold` frames, a 3-frame dissolve,
    then the target."""
    s, t = start_image(), target_image()
    rng = np.random.default_rng(0)
    frames = [s] + [_noisy(s, rng) for _ in range(hold - 1)]
    frames += [blend(s, t, w) for w in (0.25, 0.5, 0.75)]
    frames += [t] * (n - len(frames))
    return np.stack(frames[:n])


def pan(dx: float = 4.0, n: int = N, x0: float = START_XY[0], y: float = START_XY[1]) -> np.ndarray:
    """The camera moves right by `dx` px/frame: content moves left by `dx`."""
    return np.stack([window(x0 + dx * i, y) for i in range(n)])


def subpixel_pan(dx: float = 1.5, n: int = N) -> np.ndarray:
    base = window(150, START_XY[1])
    return np.stack([shifted(base, -dx * i) for i in range(n)])


def stutter(n: int = N) -> np.ndarray:
    """A pan that alternates 2 and 6 px/frame (same 4 px/frame on average)."""
    xs = np.concatenate([[0.0], np.cumsum([2.0 if i % 2 else 6.0 for i in range(n - 1)])])
    return np.stack([window(START_XY[0] + x) for x in xs])


def with_cut(n: int = N) -> np.ndarray:
    """A pan of the start view for half the take, then a hard cut to a pan of the target view
    that ends on the target."""
    half = n // 2
    first = [window(START_XY[0] + 2 * i) for i in range(half)]
    second = [window(TARGET_XY[0] - 2 * (n - half - 1 - j), TARGET_XY[1]) for j in range(n - half)]
    return np.stack(first + second)


def seam_takes(reverse: bool, n: int = 36, dx: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Two takes that share a keyframe: the first pans right; the second pans on (continuing) or
    back (a reversal of motion at the join)."""
    first = pan(dx, n)
    x_join = START_XY[0] + dx * (n - 1)
    step = -dx if reverse else dx
    second = np.stack([window(x_join + step * j) for j in range(n)])
    return first, second


def seam_jump(n: int = 36, dx: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Two takes that do not meet: the second starts on another view (a cut at the join)."""
    first = pan(dx, n)
    second = pan(dx, n, x0=TARGET_XY[0] - dx * (n - 1), y=TARGET_XY[1])
    return first, second


def _held(image: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [_noisy(image, rng) for _ in range(count)]


def arrive_then_hold(n: int = N, moving: int = N // 3) -> np.ndarray:
    """A linear cross-fade that reaches the target in its first `moving` frames (a third), then
    the target held with grain: the field's "arrives early, then stands still"."""
    s, t = start_image(), target_image()
    frames = [blend(s, t, i / (moving - 1)) for i in range(moving)]
    return np.stack(frames + _held(t, n - moving, 1))


def hold_then_arrive(n: int = N, moving: int = N // 3) -> np.ndarray:
    """The mirror: the start held with grain for two thirds, then a linear cross-fade (no jump:
    each frame is a small, even step) to the target in the last `moving` frames."""
    s, t = start_image(), target_image()
    frames = [s] + _held(s, n - moving - 1, 2)
    return np.stack(frames + [blend(s, t, i / (moving - 1)) for i in range(moving)])


def pan_then_hold(n: int = N, moving: int = N // 3, dx: float = 12.0) -> np.ndarray:
    """Camera motion that stops: a pan of `dx` px/frame for `moving` frames, then the last view
    held with grain (the arrival curve of a pan cannot see this; the hold measure can)."""
    frames = [window(START_XY[0] + dx * i) for i in range(moving)]
    return np.stack(frames + _held(frames[-1], n - moving, 3))


def still_pair(n: int = N) -> np.ndarray:
    """A near-static pair made still: the start image with grain throughout (start ≈ target)."""
    s = start_image()
    return np.stack([s] + _held(s, n - 1, 4))
