"""The Ray processes a studio started itself, recorded so that the next studio can end them.

With `STUDIO_RAY_ADDRESS` empty the studio starts a Ray of its own. Ray ties most of it to the
studio (GCS, raylet and its helpers die with it, by the kernel's parent-death signal, and the
workers follow the raylet within seconds), but not the raylet's two agents (`ray::DashboardAgent`,
`ray::RuntimeEnvAgent`): after a kill -9 they see the raylet gone at once, then try to report its
death to the GCS, which is gone too, and wait out a 60 s timeout that Ray 2.60 hard-codes
(`ray._private.process_watcher.report_raylet_error_logs` → `publish_error_to_driver`), re-parented
to init meanwhile. No Ray setting shortens that (`RAY_gcs_rpc_server_reconnect_timeout_s` does
not: measured), so the studio writes the pid and start time of every process of its Ray to
`<data>/.ray-processes.json`, and the next studio ends those still alive before it starts or joins
a Ray (a normal stop ends any that `ray.shutdown` missed). A pid is only touched when
its start time matches too, so a pid the system reused for something else is never signalled.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = ".ray-processes.json"
# An agent that has not ended this long after SIGTERM gets SIGKILL. Short: the dashboard agent
# handles SIGTERM on its event loop, which the blocked report holds, so it only ever ends by SIGKILL
# (measured); the wait is for the rest, which end at once.
TERM_WAIT_S = 2.0
KILL_WAIT_S = 5.0
_SAME_START_S = 0.005  # start times are in clock ticks (10 ms): closer than half a tick is the same


def record_path(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def ray_processes(root_pid: int | None = None) -> list[dict[str, Any]]:
    """Every Ray process under `root_pid` (this process by default): those whose program or script
    lies in the `ray` package (GCS, raylet, monitor, log monitor, dashboard) and those Ray renamed
    `ray::…` (agents, workers). Other children of the studio (an ffmpeg, say) are left out."""
    import psutil
    import ray

    # As Ray wrote the path (through a virtual environment's symlink, say) and resolved.
    package = Path(ray.__file__).parent
    ray_dirs = tuple({str(package) + os.sep, str(package.resolve()) + os.sep})
    found = []
    for proc in psutil.Process(root_pid or os.getpid()).children(recursive=True):
        try:
            name = proc.name()
            cmdline = proc.cmdline()
            created = proc.create_time()
        except psutil.Error:  # ended while we looked
            continue
        if name.startswith("ray::") or any(part.startswith(ray_dirs) for part in cmdline[:3]):
            found.append({"pid": proc.pid, "create_time": created, "name": name})
    return found


def record(data_dir: Path, processes: list[dict[str, Any]]) -> None:
    """Writes the list whole (a new file, then a rename): a kill mid-write leaves the old one."""
    path = record_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"studio_pid": os.getpid(), "processes": processes}, indent=1))
    partial.replace(path)


def _still_ours(entry: dict[str, Any]):
    """The process of `entry` if it still runs, None otherwise (ended, or its pid now someone else's)."""
    import psutil

    try:
        proc = psutil.Process(int(entry["pid"]))
        if abs(proc.create_time() - float(entry["create_time"])) > _SAME_START_S:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None


def end_recorded(data_dir: Path) -> list[dict[str, Any]]:
    """Ends the recorded Ray processes that still run (SIGTERM, then SIGKILL after `TERM_WAIT_S`)
    and removes the record; returns the entries it signalled. Never raises: a studio must start
    even if the record is unreadable."""
    import psutil

    path = record_path(data_dir)
    try:
        entries = json.loads(path.read_text()).get("processes", [])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("ignoring an unreadable %s: %s", path, exc)
        entries = []
    pairs = [(entry, proc) for entry in entries if isinstance(entry, dict) for proc in [_still_ours(entry)] if proc]
    if pairs:
        log.warning(
            "ending %d Ray process(es) left by the previous studio: %s",
            len(pairs),
            ", ".join(f"{entry.get('name')} ({entry['pid']})" for entry, _ in pairs),
        )
        procs = [proc for _, proc in pairs]
        for proc in procs:
            try:
                proc.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=TERM_WAIT_S)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(alive, timeout=KILL_WAIT_S)
        if alive:
            log.warning("Ray process(es) still running after SIGKILL: %s", [p.pid for p in alive])
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)
    return [entry for entry, _ in pairs]
