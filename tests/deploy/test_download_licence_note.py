"""scripts/download_models.py says FramePack's licence, and where its text says it does not apply,
before it asks the hub for any FramePack file: with the hub unreachable the note is still printed,
ahead of the failure. The real script in a subprocess; the "hub" is a closed port on loopback."""

from __future__ import annotations

import os
import subprocess
import sys

from backend.contracts import messages
from tests.helpers.server import ROOT, free_port

SCRIPT = ROOT / "scripts" / "download_models.py"


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "STUDIO_", "FRAMEPACK_"))}
    env.update({"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HUB_DISABLE_TELEMETRY": "1"})
    env.update({"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    cmd = [sys.executable, str(SCRIPT), "--base-dir", str(tmp_path / "models"), "--env-file", str(tmp_path / ".env")]
    # One stream, so the order of the note and the failure is the order they were written in.
    return subprocess.run(
        [*cmd, *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120
    )


def test_the_licence_note_comes_before_the_framepack_attempt_even_offline(tmp_path):
    r = _run(tmp_path, "--only", "framepack")
    out = r.stdout
    assert r.returncode == 1, out  # nothing could be fetched
    note_en = messages.render("licence_note_framepack", "en")
    note_ko = messages.render("licence_note_framepack", "ko")
    assert f"[licence] {note_en}" in out and f"[licence] {note_ko}" in out, out
    assert "https://huggingface.co/tencent/HunyuanVideo/blob/main/LICENSE" in out
    failure = out.index("[FAILED] FramePack")
    assert out.index(note_en) < failure and out.index(note_ko) < failure
    # The hub was asked after the note: the failure names FramePack's repo it could not list.
    assert "lllyasviel/FramePackI2V_HY" in out[failure:]


def test_no_licence_note_without_a_framepack_download(tmp_path):
    r = _run(tmp_path, "--only", "analysis")
    assert "[licence]" not in r.stdout, r.stdout
