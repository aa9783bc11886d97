"""Disk space for the studio's data: a low-space guard, an optional quota, full-disk errors.

New uploads and jobs are refused (507) while the data folder's disk has less free space than
`STUDIO_MIN_FREE_MB`, or while the data folder holds more than `STUDIO_DATA_QUOTA_MB`, so the disk
never fills under the jobs already running and the database. A write that fails on a full disk all
the same is answered 507 too: the client did nothing wrong.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

from backend.contracts import messages
from backend.contracts.errors import StudioError
from backend.utils.config import Settings

MB = 1024 * 1024
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class StorageFull(StudioError):
    """No room for new work: the disk is full (`disk_full`), below the floor (`disk_low`) or over
    the quota (`quota_used`)."""

    def __init__(self, code: str = "disk_full", /, **params) -> None:
        super().__init__(code, **params)


def is_disk_full(exc: BaseException) -> bool:
    """True for a write that failed because the disk (or the user's disk quota) is full."""
    seen: set[int] = set()
    link: BaseException | None = exc  # down the chain of causes
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError) and link.errno in _FULL_ERRNOS:
            return True
        if isinstance(link, sqlite3.OperationalError) and "full" in str(link).lower():
            return True  # SQLITE_FULL: "database or disk is full"
        link = link.__cause__ or link.__context__
    return False


def folder_bytes(folder: Path) -> int:
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue  # a file removed while counting
        except OSError:
            continue
    return total


def check_space(settings: Settings, incoming_bytes: int = 0) -> None:
    """Raises `StorageFull` when `incoming_bytes` more would break the free-space floor or the quota.

    Walks the data folder when a quota is set: call it off the event loop.
    """
    floor = settings.min_free_mb * MB
    if floor > 0:
        free = shutil.disk_usage(settings.data_dir).free
        if free - incoming_bytes < floor:
            raise StorageFull("disk_low", free_mb=f"{free / MB:.0f}", min_mb=messages.num(settings.min_free_mb))
    quota = settings.data_quota_mb * MB
    if quota > 0:
        used = folder_bytes(settings.data_dir)
        if used + incoming_bytes > quota:
            raise StorageFull("quota_used", used_mb=f"{used / MB:.1f}", quota_mb=messages.num(settings.data_quota_mb))
