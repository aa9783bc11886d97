"""Decoded uploads into upright 8-bit sRGB: the media helper both the upload route and the stages use.

Whatever Pillow decodes (CMYK, 16-bit, grayscale, palette, LAB, float, an embedded ICC profile
such as Adobe RGB or Display P3) comes out as upright 8-bit sRGB, or RGBA when the image has
transparency; `load_rgb` then flattens transparency onto white.
"""

from __future__ import annotations

import functools
import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

log = logging.getLogger(__name__)


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
            img,
            src,
            _srgb_profile(),
            outputMode=out_mode,
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
        lab = ImageCms.applyTransform(
            img,
            ImageCms.buildTransform(ImageCms.createProfile("LAB"), _srgb_profile(), "LAB", "RGB"),
        )
        # Pillow returns None only for an in-place transform, which this is not.
        out = lab if lab is not None else img.convert("RGB")
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
