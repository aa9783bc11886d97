"""Uploading test images to a running studio through POST /api/uploads (the one way every HTTP test
uploads; the page tests upload through the page, `tests.helpers.browser.upload_files`)."""

from __future__ import annotations

import httpx

from tests.helpers.images import encoded, scene

MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}
SUFFIX = {"PNG": "png", "JPEG": "jpg"}


def upload(client, images, *, name: str = "image{i}", fmt: str = "PNG") -> list[str]:
    """Uploads `images` (PIL images) in one request and returns their ids, in order.

    `client` is an `httpx.Client` or Starlette `TestClient` (relative URLs) or a base URL string.
    Files are named `name.format(i=i)` plus the format's suffix."""
    if isinstance(client, str):
        with httpx.Client(base_url=client, timeout=30) as c:
            return upload(c, images, name=name, fmt=fmt)
    files = [
        ("files", (f"{name.format(i=i)}.{SUFFIX[fmt]}", encoded(img, fmt), MIME[fmt])) for i, img in enumerate(images)
    ]
    r = client.post("/api/uploads", files=files)
    assert r.status_code == 201, r.text
    return [u["id"] for u in r.json()["uploads"]]


def upload_scenes(
    client,
    n: int,
    *,
    size: tuple[int, int] = (64, 64),
    shift: int = 8,
    hue: int = 0,
    salt: int = 0,
    name: str = "s{i}",
    fmt: str = "PNG",
) -> list[str]:
    """Uploads `n` scenes of `size`, image i drawn with shift `shift * i + salt` and hue `hue * i + salt`."""
    images = [scene(*size, shift=shift * i + salt, hue=hue * i + salt) for i in range(n)]
    return upload(client, images, name=name, fmt=fmt)
