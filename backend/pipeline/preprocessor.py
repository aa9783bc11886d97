"""Images into the exact frames the engines take: correct RGB, bucket size, crop or pad.

Both images of a pair go through the same bucket and the same fit, so the transition starts and
ends on frames of one size.

Decoding and colour (`normalize_upload`, `load_rgb`) live in `backend.utils.images`.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from backend.utils.images import flatten

# FramePack works on latents of 1/8 the pixel size with 2x2 patches: every edge a multiple of 16.
BUCKET_MULTIPLE = 16
# FramePack's own buckets span 416x960 … 960x416 (aspect about 2.31). A panorama or a tall phone
# screenshot is fitted into the widest/tallest bucket instead of a 2000x200 sliver the model
# never saw in training.
MAX_BUCKET_ASPECT = 960 / 416
FIT_MODES = ("crop", "pad")
PAD_COLOR = (0, 0, 0)


def bucket_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The (W, H) with about resolution² pixels, the image's aspect ratio (clamped to FramePack's
    range), edges multiples of 16."""
    if width <= 0 or height <= 0 or resolution <= 0:
        raise ValueError(f"bad size {width}x{height} at resolution {resolution}")
    aspect = min(MAX_BUCKET_ASPECT, max(1.0 / MAX_BUCKET_ASPECT, width / height))
    w = resolution * math.sqrt(aspect)
    h = resolution / math.sqrt(aspect)

    def snap(v: float) -> int:
        return max(BUCKET_MULTIPLE, int(round(v / BUCKET_MULTIPLE)) * BUCKET_MULTIPLE)

    return snap(w), snap(h)


def pair_bucket(sizes: list[tuple[int, int]], resolution: int) -> tuple[int, int]:
    """One bucket for a whole job: the mean aspect ratio of its images (log-averaged)."""
    if not sizes:
        raise ValueError("no image sizes")
    log_aspect = sum(math.log(w / h) for w, h in sizes) / len(sizes)
    aspect = math.exp(log_aspect)
    return bucket_size(int(round(1000 * aspect)), 1000, resolution)


def fit_box(src_w: int, src_h: int, width: int, height: int, mode: str) -> dict:
    """Where the source lands in the frame, without touching pixels (for the UI's explanation).

    crop: `crop` is the (left, top, right, bottom) box of the source that is kept.
    pad: `paste` is the (left, top, right, bottom) box of the frame the scaled source fills.
    `lost` is the share of the source cut away (crop) or of the frame left empty (pad).
    """
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode must be one of {FIT_MODES}, not {mode!r}")
    src_aspect, dst_aspect = src_w / src_h, width / height
    if mode == "crop":
        if src_aspect > dst_aspect:  # too wide: cut the sides
            keep_w = src_h * dst_aspect
            left = (src_w - keep_w) / 2
            box = (round(left), 0, round(left + keep_w), src_h)
        else:  # too tall: cut top and bottom
            keep_h = src_w / dst_aspect
            top = (src_h - keep_h) / 2
            box = (0, round(top), src_w, round(top + keep_h))
        kept = (box[2] - box[0]) * (box[3] - box[1])
        return {"mode": "crop", "crop": box, "lost": round(1 - kept / (src_w * src_h), 4)}
    scale = min(width / src_w, height / src_h)
    pw, ph = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    left, top = (width - pw) // 2, (height - ph) // 2
    return {
        "mode": "pad",
        "paste": (left, top, left + pw, top + ph),
        "lost": round(1 - (pw * ph) / (width * height), 4),
    }


def fit_image(img: Image.Image, width: int, height: int, mode: str = "crop") -> np.ndarray:
    """Resize to (width, height) as (H, W, 3) uint8: `crop` fills and centre-crops, `pad` fits
    and letterboxes (black)."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode must be one of {FIT_MODES}, not {mode!r}")
    img = flatten(img) if img.mode == "RGBA" else img.convert("RGB")
    box = fit_box(img.width, img.height, width, height, mode)
    if mode == "crop":
        fitted = img.resize((width, height), Image.Resampling.LANCZOS, box=box["crop"])
    else:
        left, top, right, bottom = box["paste"]
        fitted = Image.new("RGB", (width, height), PAD_COLOR)
        fitted.paste(img.resize((right - left, bottom - top), Image.Resampling.LANCZOS), (left, top))
    return np.asarray(fitted, dtype=np.uint8).copy()


def prepare_pair(
    first: Image.Image, last: Image.Image, width: int, height: int, mode: str = "crop"
) -> tuple[np.ndarray, np.ndarray]:
    """The first and last frame of one transition: same size, same fit rule."""
    return fit_image(first, width, height, mode), fit_image(last, width, height, mode)
