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

from backend.config import Settings

MB = 1024 * 1024
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}

DISK_FULL_MESSAGE = (
    "the studio's disk is full: free space where STUDIO_DATA_DIR lives (delete old jobs or uploads) and "
    "try again / 저장 공간이 가득 찼습니다: 오래된 작업이나 업로드를 삭제한 뒤 다시 시도하세요"
)


class StorageFull(Exception):
    status = 507

    def __init__(self, message: str = DISK_FULL_MESSAGE) -> None:
        super().__init__(message)
        self.message = message


def is_disk_full(exc: BaseException) -> bool:
    """True for a write that failed because the disk (or the user's disk quota) is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
            return True  # SQLITE_FULL: "database or disk is full"
        exc = exc.__cause__ or exc.__context__
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
            raise StorageFull(
                f"not enough free disk space: {free / MB:.0f} MB free, and the studio keeps at least "
                f"{settings.min_free_mb:g} MB free (STUDIO_MIN_FREE_MB); delete old jobs or uploads / "
                f"저장 공간이 부족합니다: {free / MB:.0f} MB 남음, 최소 {settings.min_free_mb:g} MB를 "
                f"남겨 둡니다 (STUDIO_MIN_FREE_MB). 오래된 작업이나 업로드를 삭제하세요"
            )
    quota = settings.data_quota_mb * MB
    if quota > 0:
        used = folder_bytes(settings.data_dir)
        if used + incoming_bytes > quota:
            raise StorageFull(
                f"the studio's storage quota is used up: {used / MB:.1f} of {settings.data_quota_mb:g} MB "
                f"(STUDIO_DATA_QUOTA_MB); delete old jobs or uploads / 저장 한도를 다 썼습니다: "
                f"{used / MB:.1f} / {settings.data_quota_mb:g} MB (STUDIO_DATA_QUOTA_MB). "
                f"오래된 작업이나 업로드를 삭제하세요"
            )
