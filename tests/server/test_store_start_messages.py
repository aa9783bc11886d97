"""Messages that say what is wrong and what to do: a database the studio cannot use at start-up,
a non-finite number, and no server paths on the open health route or in job errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import ROOT, free_port


def _start(data_dir: Path, module: list[str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(data_dir),
        "STUDIO_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
        "STUDIO_HOST": "127.0.0.1",
        "STUDIO_PORT": str(free_port()),
    }
    return subprocess.run([sys.executable, *module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


UVICORN = ["-m", "uvicorn", "backend.app:create_app", "--factory", "--host", "127.0.0.1", "--port", "0"]
MAIN = ["-m", "backend"]


@pytest.mark.parametrize("entry", [UVICORN, MAIN], ids=["uvicorn", "python-m-backend"])
def test_a_corrupt_database_stops_the_start_with_a_hint(tmp_path, entry):
    data = tmp_path / "data"
    data.mkdir()
    (data / "studio.sqlite3").write_bytes(b"this is not a database, it was overwritten by something else" * 20)
    run = _start(data, entry)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "damaged" in out and "STUDIO_DATA_DIR" in out and str(data / "studio.sqlite3") in out, out
    assert "Traceback" not in out, out


def _mount(args: list[str]) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_a_read_only_database_stops_the_start_with_a_hint(tmp_path):
    data, ro = tmp_path / "data", tmp_path / "read-only"
    data.mkdir()
    ro.mkdir()
    from backend.jobs.store import Store

    Store(data / "studio.sqlite3").close()
    for sub in ("uploads", "outputs"):
        (data / sub).mkdir()
    # Root writes through file modes, so read-only is made the way a real one is: a read-only mount.
    if not _mount(["--bind", str(data), str(ro)]):
        pytest.skip("needs root and bind mounts")
    try:
        if not _mount(["-o", "remount,bind,ro", str(ro)]):
            pytest.skip("cannot remount read-only here")
        run = _start(ro, UVICORN)
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "cannot write" in out and "STUDIO_DATA_DIR" in out and "writable" in out, out
    assert "Traceback" not in out, out


SERVER_ENV = {"STUDIO_DEFAULT_ENGINE": "morph"}  # the folder's `server`


def test_nan_seconds_is_called_not_a_finite_number(server):
    for where in ('"settings": {"seconds": NaN}', '"settings": {"seconds": Infinity}'):
        body = '{"images": ["a", "b"], ' + where + "}"
        r = httpx.post(server.url + "/api/jobs", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "finite number" in detail and "less than or equal" not in detail, detail
    r = httpx.post(server.url + "/api/params", json={"settings": {"seed": True}})
    assert r.status_code == 422 and "not true or false" in r.json()["detail"]


def test_health_names_settings_not_paths(server):
    text = httpx.get(server.url + "/api/health").text
    for path in (server.data_dir, server.tmp_path / "models", ROOT):
        assert str(path) not in text, text
    assert "UPSCALER_DIR/RealESRGAN_x4plus.pth" in text


def test_job_errors_name_settings_not_paths(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        files = [("files", (f"i{i}.png", encoded(scene(64, 64, shift=7 * i)), "image/png")) for i in range(2)]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        # The image's row stays, its file goes between submit (which checks it) and run.
        job_id = _submit_then_remove(c, server, ids)
        job = wait_for(c, job_id)
    assert job["status"] == "failed", job
    assert str(server.data_dir) not in job["error"] and "STUDIO_DATA_DIR" in job["error"], job["error"]
    assert str(server.data_dir) in server.log()  # the path is in the server's log for whoever runs it


def _submit_then_remove(c: httpx.Client, server, ids: list[str]) -> str:
    path = server.data_dir / "uploads" / f"{ids[1]}.png"
    # A long first job holds the worker while the second one's input is removed.
    slow = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 20, "resolution": 256}}).json()["id"]
    job_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 64}}).json()["id"]
    path.unlink()
    c.post(f"/api/jobs/{slow}/cancel")
    return job_id
