"""Images into the exact frames the engines take: correct RGB, bucket size, crop or pad.

Both images of a pair go through the same bucket and the same fit, so the transition starts and
ends on frames of one size.

Colour handling, in `normalize_upload`: whatever Pillow decodes (CMYK, 16-bit, grayscale, palette,
LAB, float, an embedded ICC profile such as Adobe RGB or Display P3) comes out as upright 8-bit
sRGB, or RGBA when the image has transparency; `load_rgb` then flattens transparency onto white.
"""

from __future__ import annotations

import functools
import io
import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

log = logging.getLogger(__name__)

# FramePack works on latents of 1/8 the pixel size with 2x2 patches: every edge a multiple of 16.
BUCKET_MULTIPLE = 16
# FramePack's own buckets span 416x960 … 960x416 (aspect about 2.31). A panorama or a tall phone
# screenshot is fitted into the widest/tallest bucket instead of a 2000x200 sliver the model
# never saw in training.
MAX_BUCKET_ASPECT = 960 / 416
FIT_MODES = ("crop", "pad")
PAD_COLOR = (0, 0, 0)


@functools.lru_cache(maxsize=1)
def _srgb_profile():
    # Built once on first use and never changed: a constant, not state.
    return ImageCms.createProfile("sRGB")


def _apply_icc(img: Image.Image, out_mode: str) -> Image.Image | None:
    """Convert through the embedded ICC profile to sRGB; None when there is none or it fails."""
    icc = img.info.get("icc_profile")
    if not icc:
        return None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = ImageCms.profileToProfile(
            img, src, _srgb_profile(), outputMode=out_mode,
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
        )
        return out
    except Exception as exc:  # a broken profile: plain conversion is still a usable image
        log.info("ignoring unusable ICC profile: %s", exc)
        return None


def _sixteen_bit_gray(img: Image.Image) -> Image.Image:
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        peak = 65535.0
    else:
        # Mode "I" (32-bit int) is what some decoders give 16-bit grayscale as.
        peak = 65535.0 if arr.max() > 255 else 255.0
    arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "L")


def normalize_upload(img: Image.Image) -> Image.Image:
    """Any decoded upload → upright 8-bit sRGB (or RGBA when it has transparency)."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("RGB", "RGBA"):
        converted = _apply_icc(img, mode)
        out = converted if converted is not None else img
    elif mode == "CMYK":
        # Without a profile Pillow's formula conversion is the best there is.
        converted = _apply_icc(img, "RGB")
        out = converted if converted is not None else img.convert("RGB")
    elif mode in ("LA", "PA") or (mode == "P" and "transparency" in img.info):
        out = img.convert("RGBA")
    elif mode.startswith("I;16") or mode == "I":
        out = _sixteen_bit_gray(img).convert("RGB")
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        peak = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out = Image.fromarray(arr, "L").convert("RGB")
    elif mode == "LAB":
        out = ImageCms.applyTransform(
            img,
            ImageCms.buildTransform(ImageCms.createProfile("LAB"), _srgb_profile(), "LAB", "RGB"),
        )
    elif mode == "RGBa":  # premultiplied alpha
        out = img.convert("RGBA")
    else:  # L, 1, P, YCbCr, HSV, ...
        out = img.convert("RGB")
    if out.mode == "RGBA" and out.getchannel("A").getextrema() == (255, 255):
        out = out.convert("RGB")  # an alpha channel that is opaque everywhere carries nothing
    # The pixels are sRGB now; a stale profile would make viewers convert them a second time.
    out.info.pop("icc_profile", None)
    return out


def flatten(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGB; transparent parts become `background` (white: how the image looked on the page)."""
    if img.mode == "RGBA":
        canvas = Image.new("RGB", img.size, background)
        canvas.paste(img, mask=img.getchannel("A"))
        return canvas
    return img.convert("RGB")


def load_rgb(path: Path | str) -> Image.Image:
    """A stored image as RGB; transparency is flattened onto white."""
    with Image.open(path) as img:
        img.load()
        return flatten(normalize_upload(img))


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


def prepare_images(
    paths: list[Path], resolution: int, mode: str = "crop"
) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Every image of a job, loaded and fitted to the job's one bucket."""
    images = [load_rgb(p) for p in paths]
    bucket = pair_bucket([im.size for im in images], resolution)
    return [fit_image(im, bucket[0], bucket[1], mode) for im in images], bucket
