"""A data folder can be moved: stored paths are relative to it, and older files are migrated.

The folder is made by a real server, then its database is put back in the form every studio
before the schema version wrote (user_version 0, absolute paths), moved, and opened by a new
server in its new place.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import httpx

from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer


def _legacy(db: Path, data_dir: Path) -> None:
    """The database as the studio wrote it before paths were relative: absolute, no version."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 0")
        for table, col in (("jobs", "video_path"), ("jobs", "preview_path"), ("segments", "path")):
            conn.execute(
                f"UPDATE {table} SET {col} = ? || '/' || {col} WHERE {col} IS NOT NULL AND {col} NOT LIKE '/%'",
                (str(data_dir),),
            )
    conn.close()


def test_a_moved_data_folder_keeps_its_jobs_videos_and_uploads(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    (tmp_path / "second").mkdir()
    env = {"STUDIO_DEFAULT_ENGINE": "morph"}
    with StudioServer(first, env) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        files = [
            ("files", (f"i{i}.png", encoded(scene(64, 64, shift=8 * i, hue=40 * i)), "image/png")) for i in range(3)
        ]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        job_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 64}}).json()["id"]
        job = wait_for(c, job_id)
        assert job["status"] == "completed", job
        old_data = srv.data_dir
    video_bytes = (old_data / "outputs" / job_id / "final.mp4").read_bytes()
    upload_bytes = (old_data / "uploads" / f"{ids[0]}.png").read_bytes()

    _legacy(old_data / "studio.sqlite3", old_data)
    moved = tmp_path / "elsewhere" / "mounted-data"
    moved.parent.mkdir()
    shutil.move(str(old_data), str(moved))

    with (
        StudioServer(tmp_path / "second", {**env, "STUDIO_DATA_DIR": str(moved)}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        listed = c.get("/api/jobs")
        assert listed.status_code == 200, listed.text
        [job] = listed.json()["jobs"]
        assert job["id"] == job_id and job["status"] == "completed"
        assert job["video_url"] == f"/files/outputs/{job_id}/final.mp4"
        assert c.get(job["video_url"]).content == video_bytes
        assert [s["video_url"] for s in job["segments"]] == [
            f"/files/outputs/{job_id}/segment_000.mp4",
            f"/files/outputs/{job_id}/segment_001.mp4",
        ]
        for seg in job["segments"]:
            assert c.get(seg["video_url"]).status_code == 200
        assert c.get(job["preview_url"]).status_code == 200
        assert c.get(f"/api/jobs/{job_id}").status_code == 200
        assert c.get(f"/api/uploads/{ids[0]}").json()["url"] == f"/files/uploads/{ids[0]}.png"
        assert c.get(f"/files/uploads/{ids[0]}.png").content == upload_bytes
        # The uploads still make new jobs in the new place.
        again = c.post("/api/jobs", json={"images": ids[:2], "settings": {"seconds": 1.2, "resolution": 64}})
        assert again.status_code == 201, again.text
        assert wait_for(c, again.json()["id"])["status"] == "completed"

    from backend.jobs.store import SCHEMA_VERSION

    with sqlite3.connect(moved / "studio.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        stored = [r[0] for r in conn.execute("SELECT video_path FROM jobs") if r[0]]
        stored += [r[0] for r in conn.execute("SELECT preview_path FROM jobs") if r[0]]
        stored += [r[0] for r in conn.execute("SELECT path FROM segments") if r[0]]
    conn.close()
    # The old job's paths were migrated, the new job's written relative to the data folder.
    assert len(stored) == 2 + 2 + 3 and all(p.startswith("outputs/") for p in stored), stored
    assert f"outputs/{job_id}/final.mp4" in stored


def test_migration_rewrites_absolute_paths_from_any_old_location(tmp_path):
    from backend.jobs.store import SCHEMA_V1, SCHEMA_VERSION, Store

    db = tmp_path / "studio.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(SCHEMA_V1)
    conn.execute(
        "INSERT INTO jobs (id, created_at, status, engine, request, params, video_path, preview_path)"
        " VALUES ('j1', 1, 'completed', 'morph', '{\"images\": []}', '{}', ?, ?)",
        ("/content/drive/MyDrive/studio/outputs/j1/final.mp4", str(tmp_path / "outputs/j1/preview_000_01.mp4")),
    )
    conn.execute(
        "INSERT INTO segments (job_id, idx, status, path) VALUES ('j1', 0, 'done', ?)",
        ("C:/old/outputs/j1/segment_000.mp4",),
    )
    conn.commit()
    conn.close()

    store = Store(db)
    assert store.schema_version() == SCHEMA_VERSION
    job = store.get_job("j1")
    assert job["video_path"] == "outputs/j1/final.mp4"
    assert job["preview_path"] == "outputs/j1/preview_000_01.mp4"
    assert store.segments("j1")[0]["path"] == "outputs/j1/segment_000.mp4"
    store.close()
    # Opening again runs nothing twice.
    store = Store(db)
    assert store.get_job("j1")["video_path"] == "outputs/j1/final.mp4"
    store.close()


def test_data_relative_keeps_the_part_from_outputs_on(tmp_path):
    from backend.utils.files import data_relative

    assert data_relative(None, tmp_path) is None
    assert data_relative("outputs/a/b.mp4", tmp_path) == "outputs/a/b.mp4"
    assert data_relative(str(tmp_path / "outputs/a/b.mp4"), tmp_path) == "outputs/a/b.mp4"
    assert data_relative("/x/outputs/y/outputs/a/b.mp4", tmp_path, "a") == "outputs/a/b.mp4"
    assert data_relative("/x/other/b.mp4", tmp_path, "a") == "outputs/a/b.mp4"
    assert data_relative("/x/other/b.mp4", tmp_path) is None
    assert data_relative(r"C:\Users\me\data\outputs\a\b.mp4", tmp_path, "a") == "outputs/a/b.mp4"


def test_a_newer_schema_is_refused_with_a_hint(tmp_path):
    from backend.jobs.store import SCHEMA_VERSION, Store

    db = tmp_path / "studio.sqlite3"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    try:
        Store(db)
    except Exception as exc:
        assert "newer version" in str(exc) and "STUDIO_DATA_DIR" in str(exc)
    else:
        raise AssertionError("a database from a newer studio was opened")


def test_a_job_cut_off_by_a_crash_resumes_after_its_folder_moved(tmp_path, tiny_framepack_dir):
    from backend.utils.video_io import probe
    from tests.helpers.uploads import upload

    env = {"FRAMEPACK_DIR": str(tiny_framepack_dir)}
    before = tmp_path / "before"
    before.mkdir()
    first = StudioServer(before, env).start()
    try:
        with httpx.Client(base_url=first.url, timeout=60) as c:
            ids = upload(c, [scene(64, 64, shift=10 * i, hue=30 * i) for i in range(3)])
            job_id = c.post(
                "/api/jobs",
                json={
                    "images": ids,
                    "engine": "framepack",
                    "prompt": "a cat walks",
                    "settings": {"seconds": 2.4, "quality": 40, "resolution": 64, "seed": 3},
                },
            ).json()["id"]
            job = wait_for(c, job_id, until=lambda j: j["segments"][0]["status"] == "done", timeout=120)
            assert job["status"] == "running" and job["segments"][1]["status"] != "done"
    finally:
        first.kill()
    segment0 = first.data_dir / "outputs" / job_id / "segment_000.mp4"
    made_at = segment0.stat().st_mtime_ns
    _legacy(first.data_dir / "studio.sqlite3", first.data_dir)
    moved = tmp_path / "drive" / "studio-data"
    moved.parent.mkdir()
    shutil.move(str(first.data_dir), str(moved))

    after = tmp_path / "after"
    after.mkdir()
    with (
        StudioServer(after, {**env, "STUDIO_DATA_DIR": str(moved)}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        assert c.get("/api/jobs").status_code == 200
        job = wait_for(c, job_id, timeout=180)
        assert job["status"] == "completed", job["error"]
        assert c.get("/api/health").json()["worker"]["restarts"] == 0
        # The segment made before the crash, in the old place, was found and kept.
        assert (moved / "outputs" / job_id / "segment_000.mp4").stat().st_mtime_ns == made_at
        assert probe(moved / "outputs" / job_id / "final.mp4").frames == 2 * 73 - 1
        assert c.get(job["video_url"]).status_code == 200
        # Only the newest preview is kept, in the new place.
        previews = list((moved / "outputs" / job_id).glob("preview_*"))
        assert len(previews) <= 1
