"""A real photo shipped by a PyPI package: matplotlib's `grace_hopper.jpg` (600x512).

matplotlib is in the shared environment; on a machine without it, the wheel is fetched once with
`pip download` (PyPI) into the tests' cache folder and the photo is read out of it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

MATPLOTLIB = "matplotlib==3.11.2"
MEMBER = "matplotlib/mpl-data/sample_data/grace_hopper.jpg"
CACHE = Path(os.environ.get("STUDIO_TEST_CACHE", Path.home() / ".cache" / "framepack-studio-tests"))


def _from_wheel() -> Path:
    dest = CACHE / "matplotlib" / "grace_hopper.jpg"
    if dest.exists():
        return dest
    folder = CACHE / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob("matplotlib-3.11.2-*.whl"))
    if not found:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
                str(folder),
                MATPLOTLIB,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pip download {MATPLOTLIB} failed:\n{out.stderr}")
        found = sorted(folder.glob("matplotlib-3.11.2-*.whl"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(found[0]) as zf:
        tmp = dest.with_suffix(".part")
        tmp.write_bytes(zf.read(MEMBER))
        tmp.replace(dest)
    return dest


def grace_hopper() -> np.ndarray:
    """The photo as (600, 512, 3) uint8 RGB."""
    try:
        from matplotlib import cbook

        path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    except ImportError:
        path = _from_wheel()
    image = cv2.imread(str(path))
    if image is None:
        raise RuntimeError(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
