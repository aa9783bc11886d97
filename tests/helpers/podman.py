"""Podman and buildah for the container tests: a private store, a local Debian base, the build.

Everything lives in one cache folder outside the repository (STUDIO_CONTAINER_CACHE, default
~/.cache/framepack-studio-podman): the container store, buildah's build-cache mounts (pip's
downloads) and the base image. The first run pays for debootstrap and the PyTorch download; later
runs reuse the cached layers and only rebuild what changed. The machine's own podman set-up
(/etc/containers, /var/lib/containers) is neither read for storage nor changed.

What the machine needs and the image must not get: the sandbox refuses raised rlimits (so no
default ulimits), crun cannot drive its hybrid cgroups (runc can), and PyPI is reached through a
proxy whose CA is the machine's. That CA and a pip.conf naming it are mounted into the build's RUN
steps only: neither lands in a layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("STUDIO_CONTAINER_CACHE", Path.home() / ".cache" / "framepack-studio-podman"))
BASE_IMAGE = "localhost/studio-test-base:bookworm"
DEBIAN_SUITE = "bookworm"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


class PodmanUnavailable(RuntimeError):
    """podman/buildah cannot run on this machine at all; the message says why."""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def environment() -> dict[str, str]:
    """The environment for podman, buildah and podman-compose: the private store and config."""
    CACHE.mkdir(parents=True, exist_ok=True)
    runtime = 'runtime = "runc"\n' if shutil.which("runc") else ""
    _write(CACHE / "containers.conf", f"[containers]\ndefault_ulimits = []\n\n[engine]\n{runtime}")
    _write(
        CACHE / "storage.conf",
        f'[storage]\ndriver = "overlay"\nrunroot = "{CACHE / "run"}"\ngraphroot = "{CACHE / "storage"}"\n',
    )
    (CACHE / "tmp").mkdir(exist_ok=True)
    return {
        **os.environ,
        "CONTAINERS_CONF": str(CACHE / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(CACHE / "storage.conf"),
        # buildah keeps RUN --mount=type=cache folders under TMPDIR: here they outlive the run.
        "TMPDIR": str(CACHE / "tmp"),
    }


def podman(
    *args: str, timeout: float = 120, check: bool = True, env: dict | None = None, tool: str = "podman"
) -> subprocess.CompletedProcess:
    r = subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout, env=env or environment())
    if check and r.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} -> {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def check_available() -> None:
    """Raises PodmanUnavailable when podman or buildah cannot run a container here."""
    for name in ("podman", "buildah"):
        if shutil.which(name) is None:
            raise PodmanUnavailable(f"{name} is not installed (bash scripts/setup.sh --skip-models --dev)")
    if os.geteuid() != 0:
        raise PodmanUnavailable("the container tests build with buildah's chroot isolation, which needs root")
    try:
        r = podman("info", check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PodmanUnavailable(f"podman info failed: {exc}") from exc
    if r.returncode != 0:
        raise PodmanUnavailable(f"podman info failed: {r.stderr.strip()[-500:]}")


@contextlib.contextmanager
def store_lock():
    """One test run at a time per store: runs share the image tag and the compose project name."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "tests.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the only one reachable here)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for m in re.finditer(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(https?://\S+)", text):
            url = m.group(1)
            if "security" not in url and "/debian" in url:
                return url
    return "http://deb.debian.org/debian"


def ensure_base_image() -> float:
    """A Debian bookworm base made with debootstrap (no registry is reachable). Returns the
    seconds spent (0 when the image was already in the store)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return 0.0
    if shutil.which("debootstrap") is None:
        raise PodmanUnavailable("debootstrap is not installed (bash scripts/setup.sh --skip-models --dev)")
    start = time.monotonic()
    rootfs = CACHE / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    r = subprocess.run(
        ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), debian_mirror()],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode != 0:
        raise AssertionError(f"debootstrap failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    archive = CACHE / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    try:
        podman("import", "--quiet", str(archive), BASE_IMAGE, timeout=600)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(rootfs, ignore_errors=True)
    return time.monotonic() - start


def clean_checkout(dest: Path, repo: Path) -> Path:
    """The tracked files as they are now (committed or not), nothing untracked or ignored: what a
    fresh clone of this state holds."""
    tree = (
        subprocess.run(["git", "stash", "create"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        or "HEAD"
    )
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "--format=tar", tree], cwd=repo, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def build(context: Path, tag: str, timeout: float = 3600) -> tuple[float, str]:
    """Builds docker/Dockerfile of `context` on the Debian base with PyPI's torch, as CI does.
    Returns (seconds, build log)."""
    pip_conf = CACHE / "pip.conf"
    args = [
        "bud",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--layers",
        "--ignorefile",
        str(context / "docker" / "Dockerfile.dockerignore"),
        "-f",
        str(context / "docker" / "Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg",
        "TORCH_INDEX_URL=https://pypi.org/simple",
        "-t",
        tag,
    ]
    if HOST_CA.exists():
        # /mnt exists in every Debian/Ubuntu base, so no mount point is left behind for it; the
        # /etc/pip.conf mount point stays in the image as an empty file.
        _write(pip_conf, f"[global]\ncert = /mnt/{HOST_CA.name}\n")
        args[1:1] = ["-v", f"{HOST_CA.parent}:/mnt:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]
    start = time.monotonic()
    r = podman(*args, str(context), timeout=timeout, check=False, tool="buildah")
    seconds = time.monotonic() - start
    if r.returncode != 0:
        raise AssertionError(f"image build failed after {seconds:.0f}s:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}")
    # Earlier builds' final images (untagged now) go; the layers this one reuses stay.
    podman("image", "prune", "-f", check=False, timeout=300)
    return seconds, r.stdout + r.stderr


def image_size(tag: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
