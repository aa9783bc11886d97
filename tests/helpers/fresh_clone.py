"""A fresh clone of the studio as it is in this checkout, for tests of the first-run commands.

The clone is made with `git clone` from a repository holding this checkout's files (tracked and
not ignored), so uncommitted work is tested too. Two things a first run would fetch are reused
instead, because they are not what these tests are about and re-fetching them would only cost
minutes: the Python environment (`.venv` links to this checkout's; set-up then finds its
packages installed and pip answers without an index) and the frontend packages (an empty,
up-to-date `frontend/node_modules`, so `npm ci` is skipped and the pages would use the CDN).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from tests.helpers.server import ROOT


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def source_repo(dest: Path) -> Path:
    """A git repository whose one commit is this checkout's working tree."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    dest.mkdir(parents=True)
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file() or src.is_symlink() or rel in (".venv", "frontend/node_modules"):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "checkout under test"], cwd=dest, check=True)
    return dest


def reuse_installed_parts(clone: Path) -> None:
    """See the module docstring: link the environment, mark the frontend packages current."""
    venv = (ROOT / ".venv").resolve()
    if not (clone / ".venv").exists():
        os.symlink(venv, clone / ".venv")
    modules = clone / "frontend" / "node_modules"
    modules.mkdir(parents=True, exist_ok=True)
    lock = clone / "frontend" / "package-lock.json"
    marker = modules / ".package-lock.json"
    marker.write_text("{}")
    if lock.exists():
        os.utime(lock, (1, 1))  # older than the marker: set-up sees the packages as installed


def first_run_env(**extra: str) -> dict[str, str]:
    """The environment of a new user's shell: no studio settings, the hub and the weight host
    unreachable (closed loopback ports), pip without an index (nothing to fetch), CPU only."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STUDIO_", "HF_", "TRANSFORMERS_", "UVICORN_", "FRAMEPACK_", "VIRTUAL_ENV"))
    }
    env.update(
        {
            "HF_ENDPOINT": closed_port_url(),
            "STUDIO_WEIGHTS_MIRROR": closed_port_url(),
            "STUDIO_TRANSLATE_SERVICE_URL": "127.0.0.1:9",
            "STUDIO_DEVICE": "cpu",
            "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env
