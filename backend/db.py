"""The studio's durable state in one SQLite file: uploads, jobs and their segments.

Every write commits at once, so whatever the process dies of, the file says where each job was.
One connection guarded by a lock serves the event loop and the GPU worker thread alike; WAL mode
lets readers in other connections (the translation cache) work beside it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA = """
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
"""

JSON_FIELDS = {"request", "params", "prompts", "postprocess_report", "warnings", "current"}
UNFINISHED = ("queued", "running", "interrupted")


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, args)

    def _rows(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._decode(dict(r)) for r in rows]

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        for key in JSON_FIELDS & row.keys():
            if row[key] is not None:
                row[key] = json.loads(row[key])
        return row

    # --- uploads ------------------------------------------------------------------------------
    def add_upload(self, upload_id: str, filename: str, width: int, height: int, size: int) -> None:
        self._exec(
            "INSERT INTO uploads (id, filename, width, height, bytes, created_at) VALUES (?,?,?,?,?,?)",
            (upload_id, filename, width, height, size, time.time()),
        )

    def get_upload(self, upload_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return rows[0] if rows else None

    # --- jobs ---------------------------------------------------------------------------------
    def create_job(
        self, job_id: str, engine: str, request: dict, params: dict, prompts: list, segments: int
    ) -> None:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.execute(
                    "INSERT INTO jobs (id, created_at, status, engine, request, params, prompts, stage)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (job_id, time.time(), "queued", engine, json.dumps(request), json.dumps(params),
                     json.dumps(prompts), "queued"),
                )
                self._conn.executemany(
                    "INSERT INTO segments (job_id, idx, status) VALUES (?,?,?)",
                    [(job_id, i, "pending") for i in range(segments)],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def list_jobs(self, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        if statuses:
            marks = ",".join("?" * len(statuses))
            return self._rows(
                f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created_at", statuses
            )
        return self._rows("SELECT * FROM jobs ORDER BY created_at DESC")

    def update_job(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k} = ?" for k in fields)
        values = tuple(json.dumps(v) if k in JSON_FIELDS and v is not None else v for k, v in fields.items())
        self._exec(f"UPDATE jobs SET {cols} WHERE id = ?", (*values, job_id))

    def delete_job(self, job_id: str) -> bool:
        return self._exec("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    # --- segments -----------------------------------------------------------------------------
    def segments(self, job_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM segments WHERE job_id = ? ORDER BY idx", (job_id,))

    def set_segment(self, job_id: str, idx: int, status: str, path: str | None = None,
                    frames: int | None = None) -> None:
        self._exec(
            "UPDATE segments SET status = ?, path = COALESCE(?, path), frames = COALESCE(?, frames)"
            " WHERE job_id = ? AND idx = ?",
            (status, path, frames, job_id, idx),
        )
