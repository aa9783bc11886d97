"""Data folders written by earlier versions open with their jobs and uploads intact; a folder from a
newer version is refused and left exactly as it was.

The old databases are built here from the SQL those versions ran, written out in this file (not
taken from backend/jobs/store.py, which moves on): the studio before the schema version (user_version 0,
absolute paths) and the studio at schema 2 (relative paths; the translation cache made by the
analyzers beside the store's tables, outside the version).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.utils.config import Settings
from tests.helpers.images import encoded, scene

# The tables every version up to schema 2 created (the same for user_version 0 and 2).
OLD_TABLES = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    engine TEXT NOT NULL,
    request TEXT NOT NULL,
    params TEXT NOT NULL,
    prompts TEXT,
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    video_path TEXT,
    preview_path TEXT,
    postprocess_report TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    current TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS segments (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    path TEXT,
    frames INTEGER,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS translation_cache ( engine TEXT NOT NULL, src TEXT NOT NULL, dest TEXT NOT NULL,
 text TEXT NOT NULL, translation TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (engine, src, dest, text));
"""

UPLOADS = [("5d1fbe3161a0d56e02273868", "first.jpg"), ("306f74a142a1045da45bcf95", "두번째.png")]
DONE_JOB = "d62669abdee14009"
FAILED_JOB = "a0a0a0a0a0a0a0a0"
# A job's params as schema-2 main stored them (one pair, morph engine).
PARAMS = {
    "engine": "morph",
    "quality": 70,
    "resolution": 64,
    "width": 64,
    "height": 64,
    "fit": "crop",
    "fps": 30,
    "latent_window_size": 9,
    "steps": 20,
    "distilled_guidance": 10.0,
    "true_cfg": 1.0,
    "sampling_type": "inverted_anti_drifting",
    "cache": "off",
    "draft": False,
    "crf": 20,
    "seed": 7,
    "segments": [
        {
            "pair": 0,
            "seconds": 1.233,
            "sections": 1,
            "frames": 37,
            "strength": 50,
            "end_embed_weights": [0.5],
            "seed": 7,
        }
    ],
    "total_frames": 37,
    "total_seconds": 1.233,
}
REQUEST = {
    "images": [u for u, _ in UPLOADS],
    "prompt": "천천히 돌아선다",
    "prompts": None,
    "engine": "morph",
    "settings": {"seconds": 1.2, "quality": None, "strength": None, "resolution": 64, "seed": 7},
    "postprocess": {
        "mode": "off",
        "face_restore": False,
        "upscale": 1,
        "interpolate": 1,
        "upscale_model": "realesrgan-x4plus",
        "codeformer_fidelity": None,
    },
}
PROMPTS = [{"original": "천천히 돌아선다", "english": "turns slowly", "warnings": []}]


def build_old_folder(data: Path, user_version: int) -> Path:
    """A data folder as that version left it: images on disk, rows in the database."""
    (data / "uploads").mkdir(parents=True)
    (data / "outputs" / DONE_JOB).mkdir(parents=True)
    for i, (upload_id, _) in enumerate(UPLOADS):
        (data / "uploads" / f"{upload_id}.png").write_bytes(encoded(scene(64, 64, shift=8 * i)))
    (data / "outputs" / DONE_JOB / "final.mp4").write_bytes(b"not decoded by this test")
    # Before the version, paths were absolute, in wherever the folder was then.
    prefix = "/srv/old-place/static/" if user_version == 0 else ""
    db = data / "studio.sqlite3"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_TABLES)
    for i, (upload_id, name) in enumerate(UPLOADS):
        conn.execute("INSERT INTO uploads VALUES (?,?,?,?,?,?)", (upload_id, name, 64, 64, 1000 + i, 1.0e9 + i))
    conn.execute(
        "INSERT INTO jobs (id, created_at, status, engine, request, params, prompts, progress, stage, started_at,"
        " finished_at, video_path, preview_path, postprocess_report, warnings, current, attempts)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            DONE_JOB,
            1.7e9,
            "completed",
            "morph",
            json.dumps(REQUEST),
            json.dumps(PARAMS),
            json.dumps(PROMPTS),
            1.0,
            "done",
            1.7e9 + 1,
            1.7e9 + 5,
            f"{prefix}outputs/{DONE_JOB}/final.mp4",
            f"{prefix}outputs/{DONE_JOB}/segment_000.mp4",
            None,
            json.dumps(["한 / one warning"]),
            json.dumps({"frames": 37, "fps": 30.0, "width": 64, "height": 64}),
            1,
        ),
    )
    conn.execute(
        "INSERT INTO segments VALUES (?,?,?,?,?)",
        (DONE_JOB, 0, "done", f"{prefix}outputs/{DONE_JOB}/segment_000.mp4", 37),
    )
    conn.execute(
        "INSERT INTO jobs (id, created_at, status, engine, request, params, prompts, stage, error, attempts)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            FAILED_JOB,
            1.7e9 + 10,
            "failed",
            "morph",
            json.dumps(REQUEST),
            json.dumps(PARAMS),
            json.dumps(PROMPTS),
            "failed",
            "out of memory / 메모리 부족",
            1,
        ),
    )
    conn.execute("INSERT INTO segments VALUES (?,?,?,?,?)", (FAILED_JOB, 0, "failed", None, None))
    conn.execute(
        "INSERT INTO translation_cache VALUES (?,?,?,?,?,?)",
        ("google", "ko", "en", "천천히 돌아선다", "turns slowly", 1.7e9),
    )
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.commit()
    conn.close()
    return db


def _digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


@pytest.mark.parametrize("user_version", [0, 2])
def test_an_older_data_folder_opens_with_its_jobs_and_uploads_intact(tmp_path, user_version):
    from backend.jobs.analyzers.prompt_analyzer import TranslationCache
    from backend.jobs.store import SCHEMA_VERSION, Store

    data = tmp_path / "data"
    db = build_old_folder(data, user_version)
    store = Store(db, data)
    assert store.schema_version() == SCHEMA_VERSION
    for i, (upload_id, name) in enumerate(UPLOADS):
        upload = store.get_upload(upload_id)
        assert (upload["filename"], upload["width"], upload["height"], upload["bytes"]) == (name, 64, 64, 1000 + i)
    assert store.jobs_using_upload(UPLOADS[0][0]) == [DONE_JOB, FAILED_JOB]
    done, failed = store.get_job(DONE_JOB), store.get_job(FAILED_JOB)
    assert (done["status"], done["stage"], done["progress"], done["attempts"]) == ("completed", "done", 1.0, 1)
    assert done["request"] == REQUEST and done["params"] == PARAMS and done["prompts"] == PROMPTS
    assert done["warnings"] == ["한 / one warning"] and done["current"]["frames"] == 37
    assert done["video_path"] == f"outputs/{DONE_JOB}/final.mp4"  # relative now, whatever it was
    assert [(s["idx"], s["status"], s["path"], s["frames"]) for s in store.segments(DONE_JOB)] == [
        (0, "done", f"outputs/{DONE_JOB}/segment_000.mp4", 37)
    ]
    assert (failed["status"], failed["error"], failed["warnings"]) == ("failed", "out of memory / 메모리 부족", [])
    # Each segment made before takes existed is take 1 of its transition, chosen, with its parameters.
    [take] = store.takes(DONE_JOB)
    assert (take["idx"], take["take"], take["status"], take["path"], take["frames"], take["chosen"]) == (
        0,
        1,
        "done",
        f"outputs/{DONE_JOB}/segment_000.mp4",
        37,
        True,
    )
    assert (take["seed"], take["seconds"], take["strength"], take["params"]) == (7, 1.233, 50, PARAMS["segments"][0])
    assert [(t["take"], t["status"], t["path"], t["chosen"]) for t in store.takes(FAILED_JOB)] == [
        (1, "failed", None, True)
    ]
    assert sorted(j["id"] for j in store.list_jobs()) == sorted([DONE_JOB, FAILED_JOB])
    store.close()
    cache = TranslationCache(db)
    assert cache.get("google", "ko", "en", "천천히 돌아선다") == "turns slowly"
    cache.close()

    # And the studio serves them: the job list, the job's images, the upload views.
    settings = Settings(
        data_dir=data, models_dir=tmp_path / "models", device="cpu", translate_service_url="127.0.0.1:9", _env_file=None
    )
    from backend.app import create_app

    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        jobs = {j["id"]: j for j in client.get("/api/jobs").json()["jobs"]}
        assert set(jobs) == {DONE_JOB, FAILED_JOB}
        assert jobs[DONE_JOB]["status"] == "completed" and jobs[FAILED_JOB]["status"] == "failed"
        assert jobs[DONE_JOB]["video_url"] == f"/files/outputs/{DONE_JOB}/final.mp4"
        assert client.get(jobs[DONE_JOB]["video_url"]).content == b"not decoded by this test"
        for image in jobs[DONE_JOB]["images"]:
            assert client.get(image["url"]).content == (data / "uploads" / f"{image['id']}.png").read_bytes()
        assert client.get(f"/api/uploads/{UPLOADS[1][0]}").json()["filename"] == "두번째.png"


def test_a_database_from_a_newer_version_is_refused_and_left_untouched(tmp_path):
    from backend.jobs.store import SCHEMA_VERSION, Store, StoreError

    data = tmp_path / "data"
    db = build_old_folder(data, SCHEMA_VERSION + 5)
    with sqlite3.connect(db) as conn:  # a table only that newer version knows
        conn.execute("CREATE TABLE takes (job_id TEXT, idx INTEGER)")
    conn.close()
    before = _digest(db)
    with pytest.raises(StoreError) as info:
        Store(db, data)
    message = str(info.value)
    assert f"schema {SCHEMA_VERSION + 5}" in message and f"knows {SCHEMA_VERSION}" in message
    assert "update the studio" in message and "STUDIO_DATA_DIR" in message and "업데이트" in message
    assert _digest(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 2
    conn.close()


def test_a_new_column_is_one_line_in_the_migrations(tmp_path, monkeypatch):
    from backend.jobs import store as db_module

    data = tmp_path / "data"
    db = build_old_folder(data, 2)
    store = db_module.Store(db, data)  # brought to today's schema first
    store.close()
    shutil.copy(db, tmp_path / "today.sqlite3")

    # What a later version appends: one line.
    migrations = [*db_module.MIGRATIONS, db_module.add_column("jobs", "takes TEXT NOT NULL DEFAULT '[]'")]
    monkeypatch.setattr(db_module, "MIGRATIONS", migrations)
    monkeypatch.setattr(db_module, "SCHEMA_VERSION", len(migrations))
    store = db_module.Store(db, data)
    assert store.schema_version() == len(migrations)
    job = store.get_job(DONE_JOB)
    assert job["takes"] == "[]" and job["params"] == PARAMS and store.get_upload(UPLOADS[0][0]) is not None
    store.close()

    # Today's studio refuses that file, and the file keeps its new column and rows.
    monkeypatch.undo()
    with pytest.raises(db_module.StoreError, match="newer version"):
        db_module.Store(db, data)
    with sqlite3.connect(db) as conn:
        assert [r[1] for r in conn.execute("PRAGMA table_info(jobs)")][-1] == "takes"
    conn.close()
