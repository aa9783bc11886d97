"""Odd inputs become correct upright RGB frames of the bucket size, the same for both images of a
pair. Every input is a real encoded file (PNG, JPEG, TIFF) decoded by Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from backend.pipeline.preprocessor import (
    MAX_BUCKET_ASPECT,
    bucket_size,
    fit_box,
    fit_image,
    pair_bucket,
    prepare_pair,
)
from backend.utils.images import load_rgb, normalize_upload


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgba_png_is_flattened_onto_white(tmp_path):
    arr = np.zeros((40, 60, 4), np.uint8)
    arr[..., 0] = 200
    arr[:, :30, 3] = 255  # left half opaque red, right half fully transparent
    path = _save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png")
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (60, 40)
    assert img.getpixel((5, 5)) == (200, 0, 0)
    assert img.getpixel((50, 5)) == (255, 255, 255)


def test_fully_opaque_alpha_is_dropped_by_normalize():
    img = Image.new("RGBA", (10, 10), (1, 2, 3, 255))
    assert normalize_upload(img).mode == "RGB"


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = _save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=95)
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    r, g, b = load_rgb(path).getpixel((32, 24))
    assert r > 220 and g < 40 and b < 40  # pure red ink → red


def test_embedded_icc_profile_is_applied(tmp_path):
    # A LAB-free round trip: an sRGB image tagged with an sRGB profile must keep its colours,
    # and the profile must be gone afterwards (the pixels are sRGB now).
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img = Image.new("RGB", (16, 16), (10, 120, 230))
    path = _save(img, tmp_path / "p.png", icc_profile=profile)
    with Image.open(path) as raw:
        assert raw.info.get("icc_profile")
        out = normalize_upload(raw)
    px = out.getpixel((8, 8))
    assert all(abs(a - b) <= 2 for a, b in zip(px, (10, 120, 230)))
    assert "icc_profile" not in out.info


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    arr = np.tile(np.linspace(0, 65535, 50).astype(np.uint16), (20, 1))
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)  # mode I;16
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    img = load_rgb(path)
    a = np.asarray(img)
    assert img.mode == "RGB"
    assert a[0, 0].tolist() == [0, 0, 0] and a[0, -1].tolist() == [255, 255, 255]
    assert 120 <= a[0, 25, 0] <= 140  # mid-grey stays mid-grey


def test_dark_16bit_grayscale_stays_dark():
    arr = np.full((8, 8), 200, np.uint16)  # 200/65535: nearly black, not 200/255
    out = normalize_upload(Image.fromarray(arr))
    assert out.getpixel((0, 0)) == (1, 1, 1)


def test_16bit_rgb_png_keeps_colour(tmp_path):
    import cv2

    arr = np.zeros((10, 12, 3), np.uint16)
    arr[..., 2] = 65535  # cv2 is BGR: full red
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), arr)
    assert load_rgb(path).getpixel((3, 3)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["L", "1", "P", "LA"])
def test_grayscale_and_palette_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (30, 20), (90, 90, 90)).convert(mode)
    path = _save(img, tmp_path / f"x_{mode}.png")
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (30, 20)


def test_float_image_in_unit_range():
    out = normalize_upload(Image.fromarray(np.full((4, 4), 0.5, np.float32), "F"))
    assert out.getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize("orientation, upright_size", [(1, (80, 40)), (3, (80, 40)), (6, (40, 80)), (8, (40, 80))])
def test_exif_orientation_is_applied(tmp_path, orientation, upright_size):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:20, :40] = (255, 0, 0)  # red in the stored image's top-left quarter
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(img, tmp_path / f"o{orientation}.jpg", exif=exif.tobytes(), quality=95)
    out = load_rgb(path)
    assert out.size == upright_size
    # Where the red quarter lands tells the rotation apart from a mirror.
    red_at = {1: (5, 5), 3: (75, 35), 6: (35, 5), 8: (5, 75)}[orientation]
    r, g, b = out.getpixel(red_at)
    assert r > 200 and g < 50


@pytest.mark.parametrize("w, h", [(1920, 1080), (1080, 1920), (1000, 1000), (6000, 400), (300, 5000), (17, 9)])
def test_bucket_size_is_multiple_of_16_with_clamped_aspect(w, h):
    bw, bh = bucket_size(w, h, 640)
    assert bw % 16 == 0 and bh % 16 == 0
    aspect = bw / bh
    assert 1 / MAX_BUCKET_ASPECT - 0.05 <= aspect <= MAX_BUCKET_ASPECT + 0.05
    assert 0.85 * 640 * 640 <= bw * bh <= 1.15 * 640 * 640
    if 1 / 2 < w / h < 2:
        assert abs(aspect - w / h) / (w / h) < 0.06


def test_bucket_size_rejects_nonsense():
    with pytest.raises(ValueError):
        bucket_size(0, 10, 640)


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("size", [(4000, 300), (300, 4000), (513, 511), (31, 17)])
def test_fit_image_extreme_aspects_give_bucket_size(mode, size):
    img = Image.new("RGB", size, (0, 200, 0))
    out = fit_image(img, 624, 416, mode)
    assert out.shape == (416, 624, 3) and out.dtype == np.uint8
    # The centre is always image content.
    assert out[208, 312].tolist()[1] > 150


def test_pad_letterboxes_and_crop_fills():
    wide = Image.new("RGB", (1000, 100), (0, 0, 250))
    padded = fit_image(wide, 320, 320, "pad")
    assert padded[0, 160].tolist() == [0, 0, 0] and padded[160, 160, 2] > 200
    cropped = fit_image(wide, 320, 320, "crop")
    assert cropped[0, 160, 2] > 200 and cropped[319, 0, 2] > 200


def test_fit_box_reports_what_is_lost():
    crop = fit_box(1000, 500, 500, 500, "crop")
    assert crop["crop"] == (250, 0, 750, 500) and crop["lost"] == pytest.approx(0.5)
    pad = fit_box(1000, 500, 500, 500, "pad")
    assert pad["paste"] == (0, 125, 500, 375) and pad["lost"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        fit_box(10, 10, 10, 10, "stretch")


def test_pair_of_different_aspects_is_fitted_consistently(tmp_path):
    portrait = Image.new("RGB", (600, 1000), (200, 0, 0))
    landscape = Image.new("RGBA", (1600, 900), (0, 0, 200, 255))
    w, h = pair_bucket([portrait.size, landscape.size], 640)
    a, b = prepare_pair(portrait, landscape, w, h, "pad")
    assert a.shape == b.shape == (h, w, 3)
    assert a.dtype == b.dtype == np.uint8


def test_png_roundtrip_through_bytes_keeps_size():
    buf = io.BytesIO()
    Image.new("RGB", (33, 21), (5, 6, 7)).save(buf, format="PNG")
    buf.seek(0)
    assert load_rgb(buf).size == (33, 21)
