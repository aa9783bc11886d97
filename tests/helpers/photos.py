"""A real photo shipped by a PyPI package: matplotlib's `grace_hopper.jpg` (600x512).

matplotlib is in the shared environment; on a machine without it, the wheel is fetched once with
`pip download` (PyPI) into the tests' cache folder and the photo is read out of it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.helpers.wheels import CACHE, extract, wheel

MATPLOTLIB = "matplotlib==3.11.2"
MEMBER = "matplotlib/mpl-data/sample_data/grace_hopper.jpg"


def grace_hopper() -> np.ndarray:
    """The photo as (600, 512, 3) uint8 RGB."""
    try:
        from matplotlib import cbook

        path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    except ImportError:
        path = extract(wheel(MATPLOTLIB), MEMBER, CACHE / "matplotlib" / "grace_hopper.jpg")
    image = cv2.imread(str(path))
    if image is None:
        raise RuntimeError(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
