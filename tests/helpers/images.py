"""Test images with structure (so optical flow and encoders have something to see)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def scene(width: int = 96, height: int = 96, shift: int = 0, hue: int = 0) -> Image.Image:
    """A gradient background with a bright disc and a dark square; `shift` moves them."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [
            (x * 255 // max(1, width - 1) + hue) % 256,
            (y * 255 // max(1, height - 1)),
            ((x + y) * 127 // max(1, width + height - 2) + 64 + hue) % 256,
        ],
        axis=-1,
    ).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(img)
    r = min(width, height) // 6
    cx, cy = width // 3 + shift, height // 2
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(250, 240, 40))
    draw.rectangle(
        [2 * width // 3 - r + shift // 2, height // 4 - r // 2, 2 * width // 3 + shift // 2, height // 4 + r // 2],
        fill=(20, 20, 60),
    )
    return img


def encoded(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def save(img: Image.Image, path: Path, fmt: str = "PNG") -> Path:
    img.save(path, format=fmt)
    return path
