"""The Colab notebook's code cells, executed in order in one Python process, against a local
clone of this checkout, up to a healthy studio that makes a morph video through its API.

Stand-ins exist only for what exists only on Colab: the `google.colab` module (its Secrets panel
answers nothing) and the ngrok tunnel (`pyngrok`: a tunnel object with a public URL, no network).
Everything else is real: `git clone`, `scripts/setup.sh` (hub and weight host unreachable), the
`.env` handling, `python -m backend` behind the tunnel settings, the token.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.fresh_clone import first_run_env, source_repo
from tests.helpers.images import encoded, scene
from tests.helpers.server import ROOT, free_port

pytestmark = pytest.mark.slow  # a clone of this checkout and the notebook's set-up: minutes

PUBLIC_HOST = "stand-in-tunnel.ngrok-free.app"

STAND_INS = {
    # No google/__init__.py: `google` stays a namespace package, so other google.* modules import.
    "google/colab/__init__.py": "from . import userdata\n",
    "google/colab/userdata.py": textwrap.dedent("""
        class SecretNotFoundError(Exception):
            pass

        def get(key):
            raise SecretNotFoundError(key)  # the Secrets panel is empty
    """),
    "pyngrok/__init__.py": "",
    "pyngrok/ngrok.py": textwrap.dedent(f"""
        import json, os

        class NgrokTunnel:
            def __init__(self, port, proto):
                self.public_url = "https://{PUBLIC_HOST}"
                self.config = {{"addr": f"http://localhost:{{port}}", "proto": proto}}

        def set_auth_token(token):
            pass

        def connect(port, proto="http"):
            with open(os.environ["STAND_IN_TUNNEL_LOG"], "a") as fh:
                fh.write(json.dumps({{"port": port, "proto": proto}}) + "\\n")
            return NgrokTunnel(port, proto)
    """),
}

DRIVER = textwrap.dedent("""
    import json, sys
    cells = json.load(open(sys.argv[1]))
    scope = {"__name__": "__main__"}
    for number, source in cells:
        print(f"--- cell {number} ---", flush=True)
        exec(compile(source, f"<cell {number}>", "exec"), scope)
    json.dump({"pid": scope["server"].pid, "token": scope["os"].environ["STUDIO_TOKEN"],
               "public_url": scope["tunnel"].public_url, "studio": scope["STUDIO"]}, open(sys.argv[2], "w"))
""")


def test_the_notebook_runs_to_a_studio_that_makes_a_video(tmp_path):
    notebook = json.loads((ROOT / "colab_launch.ipynb").read_text())
    cells = [(i, "".join(c["source"])) for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code"]
    assert [i for i, _ in cells] == [1, 2, 3, 4]
    assert 'REPO_URL = "https://github.com/hyunlord/image-video-studio.git"' in cells[0][1]
    assert "image-video-studio" in cells[0][1]

    stand_ins = tmp_path / "stand-ins"
    for rel, text in STAND_INS.items():
        (stand_ins / rel).parent.mkdir(parents=True, exist_ok=True)
        (stand_ins / rel).write_text(text)
    content = tmp_path / "content"
    content.mkdir()
    source = source_repo(tmp_path / "source")
    (tmp_path / "cells.json").write_text(json.dumps(cells))
    (tmp_path / "driver.py").write_text(DRIVER)
    port = free_port()
    env = first_run_env(
        STUDIO_REPO_URL=str(source),
        STUDIO_COLAB_ROOT=str(content),
        STUDIO_COLAB_PORT=str(port),
        PYTHONPATH=str(stand_ins),
        PYTHON=sys.executable,
        COLAB_RELEASE_TAG="stand-in",
        STAND_IN_TUNNEL_LOG=str(tmp_path / "tunnel.log"),
        HF_HOME=str(tmp_path / "hf-home"),
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # Colab's interpreter has the packages already (set-up keeps Colab's torch): so does this one,
    # and pip finds every requirement satisfied without an index. npm ci runs for real.
    log = tmp_path / "notebook.log"
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "cells.json"), str(tmp_path / "result.json")],
        cwd=content,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        timeout=900,
    )
    text = log.read_text(errors="replace")
    assert out.returncode == 0, text[-6000:]
    result = json.loads((tmp_path / "result.json").read_text())
    try:
        assert result["studio"] == str(content / "image-video-studio")
        assert (content / "image-video-studio" / ".git").is_dir()
        assert "Models still missing" in text and "studio at" in text
        assert "not installed" in text  # the launch cell says FramePack is missing
        assert result["public_url"] == f"https://{PUBLIC_HOST}" and result["public_url"] in text
        assert json.loads((tmp_path / "tunnel.log").read_text().splitlines()[0]) == {"port": port, "proto": "http"}
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {result['token']}"}
        assert httpx.get(base + "/api/jobs", timeout=10).status_code == 401  # behind a tunnel: token on
        # The tunnel's host name is allowed (the notebook opened the tunnel first).
        assert httpx.get(base + "/api/health", headers={"Host": PUBLIC_HOST}, timeout=10).status_code == 200
        files = [("files", (f"p{i}.png", encoded(scene(96, 96, shift=12 * i)), "image/png")) for i in range(2)]
        r = httpx.post(base + "/api/uploads", files=files, headers=auth, timeout=30)
        assert r.status_code == 201, r.text
        ids = [u["id"] for u in r.json()["uploads"]]
        r = httpx.post(
            base + "/api/jobs",
            headers=auth,
            timeout=10,
            json={
                "images": ids,
                "settings": {"resolution": 64, "seconds": 1, "seed": 5},
                "postprocess": {"mode": "off"},
            },
        )
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{base}/api/jobs/{job_id}", headers=auth, timeout=10).json())["status"] not in (
            "completed",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert job["status"] == "completed" and job["engine"] == "morph", job
        assert httpx.get(base + job["video_url"], headers=auth, timeout=30).status_code == 200
        print(f"notebook to first video: {time.monotonic() - started:.0f} s")
    finally:
        try:
            os.kill(result["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(result["pid"], 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
