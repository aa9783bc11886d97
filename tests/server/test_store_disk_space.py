"""Disk space: upload deletion, the low-space floor, the quota, and a really full disk (507).

Real servers on loopback. The full disk is a real one: a small tmpfs mounted as the data folder
(root only, as CI runs; skipped where mounting is not allowed).
"""

from __future__ import annotations

import os
import subprocess

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer

JOB = {"settings": {"seconds": 1.2, "resolution": 64}}


def _files(*images, name="i"):
    return [("files", (f"{name}{i}.png", encoded(img), "image/png")) for i, img in enumerate(images)]


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    # Noise does not compress: the PNG is about width * height * 3 bytes.
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def _pngs(data_dir):
    return sorted(p.name for p in (data_dir / "uploads").glob("*.png"))


def test_uploads_can_be_deleted_once_no_job_uses_them(tmp_path):
    with (
        StudioServer(tmp_path, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        ids = [
            u["id"]
            for u in c.post(
                "/api/uploads", files=_files(scene(64, 64), scene(64, 64, shift=9), scene(64, 64, hue=80))
            ).json()["uploads"]
        ]
        job_id = c.post("/api/jobs", json={"images": ids[:2], **JOB}).json()["id"]
        assert wait_for(c, job_id)["status"] == "completed"

        # Not used by any job: gone at once, row and file.
        assert c.delete(f"/api/uploads/{ids[2]}").status_code == 204
        assert c.get(f"/api/uploads/{ids[2]}").status_code == 404
        assert c.get(f"/files/uploads/{ids[2]}.png").status_code == 404
        assert not (srv.data_dir / "uploads" / f"{ids[2]}.png").exists()
        again = c.delete(f"/api/uploads/{ids[2]}")
        assert again.status_code == 404 and "not found" in again.json()["detail"]

        # Used by a job: kept, with a message that says which job and what to do.
        used = c.delete(f"/api/uploads/{ids[0]}")
        assert used.status_code == 409
        assert job_id in used.json()["detail"] and "delete the job first" in used.json()["detail"]
        assert c.get(f"/files/uploads/{ids[0]}.png").status_code == 200
        assert c.post(f"/api/jobs/{job_id}/retry").status_code == 409  # completed: nothing to retry

        assert c.delete(f"/api/jobs/{job_id}").status_code == 204
        for upload_id in ids[:2]:
            assert c.delete(f"/api/uploads/{upload_id}").status_code == 204
        assert _pngs(srv.data_dir) == []


def test_low_free_space_refuses_new_uploads_and_jobs_with_507(tmp_path):
    # A floor no disk here has: every new upload and job is refused, nothing is written.
    env = {"STUDIO_DEFAULT_ENGINE": "morph", "STUDIO_MIN_FREE_MB": str(10**9)}
    with StudioServer(tmp_path, env) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.post("/api/uploads", files=_files(scene(64, 64), scene(64, 64, shift=9)))
        assert r.status_code == 507, r.text
        assert "STUDIO_MIN_FREE_MB" in r.json()["detail"] and "저장 공간" in r.json()["detail"]
        assert _pngs(srv.data_dir) == []
        assert list((srv.data_dir / "uploads" / ".incoming").glob("*")) == []
        job = c.post("/api/jobs", json={"images": ["a" * 24, "b" * 24], **JOB})
        assert job.status_code == 507 and "STUDIO_MIN_FREE_MB" in job.json()["detail"]
        assert c.get("/api/jobs").json()["jobs"] == []


def test_the_quota_refuses_work_past_it_until_something_is_deleted(tmp_path):
    big = encoded(_noise(400, 400))  # ~480 KB
    env = {"STUDIO_DEFAULT_ENGINE": "morph", "STUDIO_MIN_FREE_MB": "0", "STUDIO_DATA_QUOTA_MB": "1.2"}
    with StudioServer(tmp_path, env) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        first = c.post("/api/uploads", files=[("files", ("a.png", big, "image/png"))])
        assert first.status_code == 201, first.text
        second = c.post("/api/uploads", files=[("files", ("b.png", big, "image/png"))])
        assert second.status_code == 201, second.text
        third = c.post("/api/uploads", files=[("files", ("c.png", big, "image/png"))])
        assert third.status_code == 507, third.text
        assert "STUDIO_DATA_QUOTA_MB" in third.json()["detail"]
        job = c.post(
            "/api/jobs", json={"images": [u["id"] for u in (first.json()["uploads"] + second.json()["uploads"])], **JOB}
        )
        assert job.status_code in (201, 507)  # the quota counts whatever the data folder holds now
        assert len(_pngs(srv.data_dir)) == 2
        if job.status_code == 201:
            wait_for(c, job.json()["id"])
            assert c.delete(f"/api/jobs/{job.json()['id']}").status_code == 204
        assert c.delete(f"/api/uploads/{first.json()['uploads'][0]['id']}").status_code == 204
        fourth = c.post("/api/uploads", files=[("files", ("d.png", big, "image/png"))])
        assert fourth.status_code == 201, fourth.text


def _mount_tmpfs(path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


def test_a_really_full_disk_answers_507_and_leaves_nothing_behind(tmp_path):
    data = tmp_path / "small-disk"
    if not _mount_tmpfs(data, "6m"):
        pytest.skip("needs root and tmpfs mounts to make a real full disk")
    try:
        # No floor, so the write itself meets the full disk.
        env = {"STUDIO_DATA_DIR": str(data), "STUDIO_MIN_FREE_MB": "0", "STUDIO_DEFAULT_ENGINE": "morph"}
        with StudioServer(tmp_path, env) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
            huge = encoded(_noise(1200, 1000, seed=1))  # ~3.6 MB: the part file and the PNG do not both fit
            r = c.post("/api/uploads", files=[("files", ("huge.png", huge, "image/png"))])
            assert r.status_code == 507, r.text
            detail = r.json()["detail"]
            assert "disk is full" in detail and "가득" in detail and "Errno" not in detail
            assert _pngs(data) == [] and list((data / "uploads" / ".incoming").glob("*")) == []
            # The space was given back: a small upload works right after.
            small = c.post("/api/uploads", files=_files(scene(64, 64)))
            assert small.status_code == 201, small.text
            assert c.get("/api/health").status_code == 200
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
