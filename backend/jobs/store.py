"""The studio's durable state in one SQLite file: uploads, jobs and their segments.

Every write commits at once, so whatever the process dies of, the file says where each job was.
One connection guarded by a lock serves the event loop and the GPU worker thread alike; WAL mode
lets readers in other connections (the translation cache) work beside it.

File paths are stored relative to the data folder (`outputs/<job>/final.mp4`), so the folder can be
moved or mounted elsewhere (a Docker volume, Colab's Drive) and still be found. The schema carries
its version in `PRAGMA user_version`; `MIGRATIONS` brings an older file up to date when it opens.

A job row the studio cannot read (a column that is not valid JSON, a value of the wrong kind) is
isolated rather than allowed to break every route: it is read back as a failed job whose stage is
`broken` and whose error says what is wrong, and it is marked so in the file; the damaged text is
left as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.contracts.models import JobStatus, SegmentStatus, TakeStatus
from backend.utils.files import data_relative

log = logging.getLogger(__name__)

SCHEMA_V1 = """
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

# The prompt translator's cache shares the file (its own connection, see analyzers): its table is
# part of the versioned schema too, so a change to it is a migration like any other.
TRANSLATION_CACHE_TABLE = """
CREATE TABLE IF NOT EXISTS translation_cache (
    engine TEXT NOT NULL,
    src TEXT NOT NULL,
    dest TEXT NOT NULL,
    text TEXT NOT NULL,
    translation TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (engine, src, dest, text)
)
"""

JSON_FIELDS = {"request", "params", "prompts", "postprocess_report", "warnings", "current", "seams"}
BROKEN_STAGE = "broken"

# What each JSON column of a job must decode to, and what a damaged one reads back as.
_JOB_SHAPES: dict[str, tuple[tuple[type, ...], Any]] = {
    "request": ((dict,), {"images": []}),
    "params": ((dict,), {}),
    "prompts": ((list, type(None)), []),
    "postprocess_report": ((dict, list, type(None)), None),
    "warnings": ((list, type(None)), []),
    "current": ((dict, type(None)), None),
    "seams": ((list, type(None)), None),
}
_JOB_NUMBERS = ("created_at", "progress", "started_at", "finished_at", "attempts", "position")
_STATUSES = tuple(JobStatus)


def take_seed(seed: int, take: int) -> int:
    """Take 1 keeps the transition's seed (what the job had before takes); the others step away
    from it by a large odd stride, so no two takes of one job's transitions share a seed."""
    return (int(seed) + 1_000_003 * (take - 1)) % 2**31


class StoreError(StudioError, RuntimeError):
    """The database cannot be opened or written; the catalogue's sentence says which file and what
    to do."""


# --- migrations: index + 1 is the schema version each one brings the file to -----------------
def _create_tables(conn: sqlite3.Connection, data_dir: Path) -> None:
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            conn.execute(statement)


def _relative_paths(conn: sqlite3.Connection, data_dir: Path) -> None:
    for job_id, video, preview in conn.execute("SELECT id, video_path, preview_path FROM jobs").fetchall():
        conn.execute(
            "UPDATE jobs SET video_path = ?, preview_path = ? WHERE id = ?",
            (data_relative(video, data_dir, job_id), data_relative(preview, data_dir, job_id), job_id),
        )
    for job_id, idx, path in conn.execute("SELECT job_id, idx, path FROM segments WHERE path IS NOT NULL").fetchall():
        conn.execute(
            "UPDATE segments SET path = ? WHERE job_id = ? AND idx = ?",
            (data_relative(path, data_dir, job_id), job_id, idx),
        )


def _translation_cache(conn: sqlite3.Connection, data_dir: Path) -> None:
    conn.execute(TRANSLATION_CACHE_TABLE)


TAKES_TABLE = """
CREATE TABLE IF NOT EXISTS takes (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    take INTEGER NOT NULL,
    seed INTEGER,
    prompt TEXT,
    seconds REAL,
    strength INTEGER,
    params TEXT,
    status TEXT NOT NULL,
    path TEXT,
    frames INTEGER,
    score TEXT,
    chosen INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    PRIMARY KEY (job_id, idx, take)
)
"""


def _segment_params(raw: str | None, idx: int) -> dict | None:
    try:
        segments = json.loads(raw or "{}").get("segments") or []
        seg = segments[idx]
        return seg if isinstance(seg, dict) else None
    except (TypeError, ValueError, AttributeError, IndexError):
        return None  # a damaged job row: its take keeps no parameters, the job is shown broken anyway


def _takes(conn: sqlite3.Connection, data_dir: Path) -> None:
    """Each segment made so far becomes take 1 of its transition, chosen, with its file where it is."""
    conn.execute(TAKES_TABLE)
    rows = conn.execute(
        "SELECT s.job_id, s.idx, s.status, s.path, s.frames, j.params, j.created_at FROM segments s"
        " LEFT JOIN jobs j ON j.id = s.job_id"
    ).fetchall()
    for job_id, idx, status, path, frames, params, created in rows:
        seg = _segment_params(params, idx)
        conn.execute(
            "INSERT OR IGNORE INTO takes (job_id, idx, take, seed, seconds, strength, params, status, path, frames,"
            " chosen, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                job_id,
                idx,
                1,
                seg.get("seed") if seg else None,
                seg.get("seconds") if seg else None,
                seg.get("strength") if seg else None,
                json.dumps(seg) if seg else None,
                status,
                path,
                frames,
                1,
                created if isinstance(created, (int, float)) else time.time(),
            ),
        )


def add_column(table: str, column: str) -> Callable[[sqlite3.Connection, Path], None]:
    """The migration that adds one column, so a new field is one line appended to MIGRATIONS:
    `add_column("jobs", "takes TEXT NOT NULL DEFAULT '[]'")` (SQLite fills existing rows with the
    default)."""

    def migrate(conn: sqlite3.Connection, data_dir: Path) -> None:
        # Like the other migrations, safe to run on a file that already has it (a version number
        # lowered by hand, a copy restored over a newer file).
        if column.split()[0] not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    migrate.__name__ = f"add_column_{table}_{column.split()[0]}"
    return migrate


def _queue_positions(conn: sqlite3.Connection, data_dir: Path) -> None:
    """Every job gets a place in the queue: its rank by creation, which was the order before."""
    add_column("jobs", "position INTEGER")(conn, data_dir)
    rows = conn.execute("SELECT id FROM jobs WHERE position IS NULL ORDER BY created_at, rowid").fetchall()
    top = conn.execute("SELECT COALESCE(MAX(position), 0) FROM jobs").fetchone()[0]
    conn.executemany("UPDATE jobs SET position = ? WHERE id = ?", [(top + n, r[0]) for n, r in enumerate(rows, 1)])


PRESETS_TABLE = """
CREATE TABLE IF NOT EXISTS presets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    settings TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""


def _presets(conn: sqlite3.Connection, data_dir: Path) -> None:
    conn.execute(PRESETS_TABLE)


# Append only: a released version's migrations never change, since files already carry their number.
MIGRATIONS: list[Callable[[sqlite3.Connection, Path], None]] = [
    _create_tables,
    _relative_paths,
    _translation_cache,
    _takes,
    add_column("jobs", "seams TEXT"),
    _queue_positions,
    _presets,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _refuse_newer(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; a file from a newer studio is refused before anything, even the
    journal mode, is written to it, so that studio finds it exactly as it left it."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError("store_newer_schema", path=str(path), version=version, known=SCHEMA_VERSION)
    return version


def _migrate(conn: sqlite3.Connection, data_dir: Path, path: Path) -> None:
    version = _refuse_newer(conn, path)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[target - 1](conn, data_dir)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if version:
            log.info("database %s migrated to schema %d", path, target)


def _open_error(path: Path, exc: BaseException) -> StoreError:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and any(s in text for s in ("not a database", "malformed", "corrupt")):
        return StoreError("store_damaged", path=str(path), cause=text, name=path.name, folder=str(path.parent))
    return StoreError("store_unwritable", path=str(path), cause=text, folder=str(path.parent))


class Store:
    def __init__(self, path: Path, data_dir: Path | None = None) -> None:
        self.path = path
        self.data_dir = data_dir or path.parent
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise _open_error(path, exc) from exc
        try:
            self._conn.row_factory = sqlite3.Row
            _refuse_newer(self._conn, path)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            _migrate(self._conn, self.data_dir, path)
            # A file that opens may still refuse writes (read-only file or folder): find out now,
            # not at the first job.
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("ROLLBACK")
        except (OSError, sqlite3.Error) as exc:
            self._conn.close()
            raise _open_error(path, exc) from exc
        except StoreError:
            self._conn.close()
            raise
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def schema_version(self) -> int:
        with self._lock:
            return self._conn.execute("PRAGMA user_version").fetchone()[0]

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE … COMMIT under the lock; rolled back on any error. A BEGIN that fails
        (a read-only or full data folder) raises its own error: there is nothing to roll back."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, args)

    def _raw(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [dict(r) for r in rows]

    # --- uploads ------------------------------------------------------------------------------
    def add_upload(self, upload_id: str, filename: str, width: int, height: int, size: int) -> None:
        self._exec(
            "INSERT INTO uploads (id, filename, width, height, bytes, created_at) VALUES (?,?,?,?,?,?)",
            (upload_id, filename, width, height, size, time.time()),
        )

    def get_upload(self, upload_id: str) -> dict[str, Any] | None:
        rows = self._raw("SELECT * FROM uploads WHERE id = ?", (upload_id,))
        return rows[0] if rows else None

    def delete_upload(self, upload_id: str) -> bool:
        return self._exec("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount > 0

    def jobs_using_upload(self, upload_id: str) -> list[str]:
        """Ids of the jobs whose request names this upload, or one of whose takes does (a re-roll's own
        keyframe image); read from the stored text, so a job whose row is damaged still counts."""
        name = json.dumps(upload_id)
        rows = self._raw(
            "SELECT id FROM jobs WHERE instr(request, ?) > 0 "
            "OR id IN (SELECT job_id FROM takes WHERE instr(params, ?) > 0) ORDER BY created_at",
            (name, name),
        )
        return [r["id"] for r in rows]

    def upload_bytes(self) -> int:
        return int(self._raw("SELECT COALESCE(SUM(bytes), 0) AS n FROM uploads")[0]["n"])

    # --- jobs ---------------------------------------------------------------------------------
    def create_job(
        self, job_id: str, engine: str, request: dict, params: dict, prompts: list, segments: int, takes: int = 1
    ) -> None:
        """The job, its segment rows and `takes` pending takes per transition, each with its own seed."""
        now = time.time()
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO jobs (id, created_at, status, engine, request, params, prompts, stage, position)"
                " VALUES (?,?,?,?,?,?,?,?,(SELECT COALESCE(MAX(position), 0) + 1 FROM jobs))",
                (
                    job_id,
                    time.time(),
                    JobStatus.queued,
                    engine,
                    json.dumps(request),
                    json.dumps(params),
                    json.dumps(prompts),
                    "queued",
                ),
            )
            self._plan_rows(conn, job_id, params, segments, takes, now)

    @staticmethod
    def _plan_rows(conn: sqlite3.Connection, job_id: str, params: dict, segments: int, takes: int, now: float):
        """A job's segment rows and `takes` pending takes per transition, each with its own seed."""
        conn.executemany(
            "INSERT INTO segments (job_id, idx, status) VALUES (?,?,?)",
            [(job_id, i, SegmentStatus.pending) for i in range(segments)],
        )
        seg_params = params.get("segments") or []
        for i in range(segments):
            seg = seg_params[i] if i < len(seg_params) else {}
            for k in range(1, takes + 1):
                take = dict(seg, seed=take_seed(seg.get("seed", 0), k))
                conn.execute(
                    "INSERT INTO takes (job_id, idx, take, seed, seconds, strength, params, status,"
                    " chosen, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        job_id,
                        i,
                        k,
                        take["seed"],
                        take.get("seconds"),
                        take.get("strength"),
                        json.dumps(take),
                        TakeStatus.pending,
                        0,
                        now,
                    ),
                )

    def replan_queued(
        self,
        job_id: str,
        engine: str,
        request: dict,
        params: dict,
        prompts: list,
        segments: int,
        takes: int = 1,
        warnings: list | None = None,
    ) -> bool:
        """A queued job's new request and plan: its segment and take rows made again from `params`.
        Only while it is still `queued` with nothing made (False otherwise, nothing changed)."""
        with self._transaction() as conn:
            row = conn.execute("SELECT status, video_path FROM jobs WHERE id = ?", (job_id,)).fetchone()
            made = conn.execute(
                "SELECT 1 FROM takes WHERE job_id = ? AND status != ? LIMIT 1", (job_id, TakeStatus.pending)
            ).fetchone()
            if row is None or row["status"] != JobStatus.queued or row["video_path"] or made:
                return False
            conn.execute(
                "UPDATE jobs SET engine = ?, request = ?, params = ?, prompts = ?, warnings = ? WHERE id = ?",
                (
                    engine,
                    json.dumps(request),
                    json.dumps(params),
                    json.dumps(prompts),
                    json.dumps(warnings or []),
                    job_id,
                ),
            )
            conn.execute("DELETE FROM takes WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM segments WHERE job_id = ?", (job_id,))
            self._plan_rows(conn, job_id, params, segments, takes, time.time())
        return True

    # --- the queue's order ----------------------------------------------------------------------
    def waiting_order(self, statuses: tuple) -> list[dict[str, Any]]:
        """`id`, `engine` and `position` of the jobs in `statuses`, in the queue's order: the
        lowest position runs first (the creation time breaks a tie)."""
        marks = ",".join("?" * len(statuses))
        return self._raw(
            f"SELECT id, engine, position FROM jobs WHERE status IN ({marks})"
            " ORDER BY position IS NULL, position, created_at, rowid",
            tuple(statuses),
        )

    def to_back(self, job_id: str) -> None:
        """The job's place becomes the end of the queue (queued again by a retry or an edit of takes)."""
        self._exec(
            "UPDATE jobs SET position = (SELECT COALESCE(MAX(position), 0) + 1 FROM jobs) WHERE id = ?", (job_id,)
        )

    def reorder(self, order: list[str], statuses: tuple) -> list[str]:
        """Gives the jobs of `order` (all waiting now) the waiting jobs' places in that order: the
        places themselves stay the same set, so jobs outside the list keep theirs. Returns the ids
        whose place changed. In one transaction with the check, so a job that started meanwhile is
        never moved."""
        marks = ",".join("?" * len(statuses))
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT id, position FROM jobs WHERE status IN ({marks})"
                " ORDER BY position IS NULL, position, created_at, rowid",
                tuple(statuses),
            ).fetchall()
            current = {r["id"]: r["position"] for r in rows}
            if sorted(order) != sorted(current):
                raise KeyError("the waiting jobs changed")
            places = sorted(p if p is not None else 0 for p in current.values())
            if len(set(places)) != len(places) or 0 in places:  # ties or missing places: number afresh
                top = conn.execute("SELECT COALESCE(MAX(position), 0) FROM jobs").fetchone()[0]
                places = [top + n for n in range(1, len(order) + 1)]
            changed = [job_id for job_id, place in zip(order, places) if current[job_id] != place]
            conn.executemany(
                "UPDATE jobs SET position = ? WHERE id = ?", [(place, job_id) for job_id, place in zip(order, places)]
            )
        return changed

    # --- presets --------------------------------------------------------------------------------
    def _preset(self, row: dict[str, Any]) -> dict[str, Any]:
        try:
            row["settings"] = json.loads(row["settings"])
        except (TypeError, ValueError):
            row["settings"] = {}
        if not isinstance(row["settings"], dict):
            row["settings"] = {}
        return row

    def presets(self) -> list[dict[str, Any]]:
        return [self._preset(r) for r in self._raw("SELECT * FROM presets ORDER BY created_at, rowid")]

    def get_preset(self, preset_id: str) -> dict[str, Any] | None:
        rows = self._raw("SELECT * FROM presets WHERE id = ?", (preset_id,))
        return self._preset(rows[0]) if rows else None

    def preset_named(self, name_key: str) -> dict[str, Any] | None:
        rows = self._raw("SELECT * FROM presets WHERE name_key = ?", (name_key,))
        return self._preset(rows[0]) if rows else None

    def add_preset(self, preset_id: str, name: str, name_key: str, settings: dict) -> None:
        now = time.time()
        self._exec(
            "INSERT INTO presets (id, name, name_key, settings, created_at, updated_at) VALUES (?,?,?,?,?,?)",
            (preset_id, name, name_key, json.dumps(settings), now, now),
        )

    def rename_preset(self, preset_id: str, name: str, name_key: str) -> bool:
        return (
            self._exec(
                "UPDATE presets SET name = ?, name_key = ?, updated_at = ? WHERE id = ?",
                (name, name_key, time.time(), preset_id),
            ).rowcount
            > 0
        )

    def delete_preset(self, preset_id: str) -> bool:
        return self._exec("DELETE FROM presets WHERE id = ?", (preset_id,)).rowcount > 0

    def _job(self, row: dict[str, Any]) -> dict[str, Any]:
        """A job row decoded; a damaged one comes back failed/broken with the reason."""
        problems = []
        for key, (kinds, empty) in _JOB_SHAPES.items():
            raw = row.get(key)
            if raw is None:
                continue
            try:
                value = json.loads(raw)
            except (TypeError, ValueError):
                problems.append(f"'{key}' is not valid JSON")
                row[key] = empty
                continue
            if not isinstance(value, kinds):
                problems.append(f"'{key}' is a {type(value).__name__}, not a {kinds[0].__name__}")
                value = empty
            row[key] = value
        images = row["request"].get("images")
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            problems.append("'request' has no list of image ids")
            row["request"] = {**row["request"], "images": []}
        for key in _JOB_NUMBERS:
            value = row.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                problems.append(f"'{key}' is not a number")
                row[key] = 0 if key in ("created_at", "progress", "attempts") else None
        segments = row["params"].get("segments")
        if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
            problems.append("'params' has no list of transitions")
            row["params"] = {**row["params"], "segments": []}
        if isinstance(row.get("id"), str) and self._raw(
            "SELECT 1 FROM takes WHERE job_id = ? AND (typeof(idx) != 'integer' OR typeof(take) != 'integer') LIMIT 1",
            (row["id"],),
        ):
            problems.append("a take's transition or number is not an integer")
        for key in ("status", "engine"):
            if not isinstance(row.get(key), str):
                problems.append(f"'{key}' is not text")
                row[key] = "unknown"
        if isinstance(row.get("status"), str) and row["status"] != "unknown" and row["status"] not in _STATUSES:
            problems.append(f"'status' is {row['status']!r}, not one of {', '.join(_STATUSES)}")
        if problems:
            self._mark_broken(row, "; ".join(problems))
        return row

    def _mark_broken(self, row: dict[str, Any], problems: str) -> None:
        reason = messages.bilingual("job_record_damaged", {"problems": problems})
        if row.get("stage") != BROKEN_STAGE:
            log.error("job %s in %s is damaged (%s); marked failed", row.get("id"), self.path, problems)
            try:
                self._exec(
                    "UPDATE jobs SET status = ?, stage = ?, error = ?, "
                    "finished_at = COALESCE(finished_at, ?) WHERE id = ?",
                    (JobStatus.failed, BROKEN_STAGE, reason, time.time(), row["id"]),
                )
            except sqlite3.Error:
                log.exception("could not mark job %s as damaged", row.get("id"))
        row.update(status=JobStatus.failed.value, stage=BROKEN_STAGE, error=reason)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._raw("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return self._job(rows[0]) if rows else None

    def list_jobs(self, statuses: tuple[JobStatus, ...] | None = None) -> list[dict[str, Any]]:
        if statuses:
            marks = ",".join("?" * len(statuses))
            rows = self._raw(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY created_at", statuses)
        else:
            rows = self._raw("SELECT * FROM jobs ORDER BY created_at DESC")
        jobs = [self._job(r) for r in rows]
        # A row found damaged while reading is no longer in the asked-for states.
        return [j for j in jobs if not statuses or j["status"] in statuses]

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
        return self._raw("SELECT * FROM segments WHERE job_id = ? ORDER BY idx", (job_id,))

    def set_segment(
        self, job_id: str, idx: int, status: SegmentStatus, path: str | None = None, frames: int | None = None
    ) -> None:
        self._exec(
            "UPDATE segments SET status = ?, path = COALESCE(?, path), frames = COALESCE(?, frames)"
            " WHERE job_id = ? AND idx = ?",
            (status, path, frames, job_id, idx),
        )

    # --- takes --------------------------------------------------------------------------------
    def _take(self, row: dict[str, Any]) -> dict[str, Any]:
        for key in ("params", "score"):
            try:
                row[key] = json.loads(row[key]) if row.get(key) else None
            except (TypeError, ValueError):
                row[key] = None
        row["chosen"] = bool(row["chosen"])
        return row

    def takes(self, job_id: str, idx: int | None = None) -> list[dict[str, Any]]:
        if idx is None:
            rows = self._raw("SELECT * FROM takes WHERE job_id = ? ORDER BY idx, take", (job_id,))
        else:
            rows = self._raw("SELECT * FROM takes WHERE job_id = ? AND idx = ? ORDER BY take", (job_id, idx))
        return [self._take(r) for r in rows]

    def get_take(self, job_id: str, idx: int, take: int) -> dict[str, Any] | None:
        rows = self._raw("SELECT * FROM takes WHERE job_id = ? AND idx = ? AND take = ?", (job_id, idx, take))
        return self._take(rows[0]) if rows else None

    def add_take(self, job_id: str, idx: int, params: dict, prompt: str | None = None) -> int:
        """A new pending take of one transition, numbered one past the highest there now."""
        with self._transaction() as conn:
            top = conn.execute(
                "SELECT COALESCE(MAX(take), 0) FROM takes WHERE job_id = ? AND idx = ?", (job_id, idx)
            ).fetchone()[0]
            take = top + 1
            conn.execute(
                "INSERT INTO takes (job_id, idx, take, seed, prompt, seconds, strength, params, status,"
                " chosen, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    idx,
                    take,
                    params.get("seed"),
                    prompt,
                    params.get("seconds"),
                    params.get("strength"),
                    json.dumps(params),
                    TakeStatus.pending,
                    0,
                    time.time(),
                ),
            )
        return take

    def set_take(
        self,
        job_id: str,
        idx: int,
        take: int,
        status: TakeStatus,
        path: str | None = None,
        frames: int | None = None,
        score: dict | None = None,
    ) -> None:
        self._exec(
            "UPDATE takes SET status = ?, path = COALESCE(?, path), frames = COALESCE(?, frames),"
            " score = COALESCE(?, score) WHERE job_id = ? AND idx = ? AND take = ?",
            (status, path, frames, json.dumps(score) if score is not None else None, job_id, idx, take),
        )

    def choose_take(self, job_id: str, idx: int, take: int) -> None:
        """Marks one finished take as the transition's pick; the segment row follows it, so the
        join and the job view read the chosen take's file."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT path, frames FROM takes WHERE job_id = ? AND idx = ? AND take = ?", (job_id, idx, take)
            ).fetchone()
            if row is None:
                raise KeyError(take)
            conn.execute("UPDATE takes SET chosen = (take = ?) WHERE job_id = ? AND idx = ?", (take, job_id, idx))
            conn.execute(
                "UPDATE segments SET status = ?, path = ?, frames = ? WHERE job_id = ? AND idx = ?",
                (SegmentStatus.done, row["path"], row["frames"], job_id, idx),
            )

    def delete_take(self, job_id: str, idx: int, take: int) -> bool:
        return (
            self._exec("DELETE FROM takes WHERE job_id = ? AND idx = ? AND take = ?", (job_id, idx, take)).rowcount > 0
        )

    def retry_failed_takes(self, job_id: str) -> None:
        """A retried job makes its failed takes again."""
        self._exec(
            "UPDATE takes SET status = ? WHERE job_id = ? AND status = ?",
            (TakeStatus.pending, job_id, TakeStatus.failed),
        )

    def set_take_params(self, job_id: str, idx: int, take: int, params: dict) -> None:
        self._exec(
            "UPDATE takes SET params = ? WHERE job_id = ? AND idx = ? AND take = ?",
            (json.dumps(params), job_id, idx, take),
        )
