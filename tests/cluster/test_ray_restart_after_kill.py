"""A studio that started a Ray of its own (`STUDIO_RAY_ADDRESS` empty) and was killed with -9: Ray's
dashboard and runtime-env agents outlive it for about a minute (they wait out a 60 s report to the
dead GCS, see backend/jobs/cluster/leftovers.py). A studio started at once on the same data folder
must start its pool and run a job all the same, and end the first studio's Ray processes well
before Ray would; a normal stop leaves no Ray process and no record behind."""

from __future__ import annotations

import json
import time

import httpx
import psutil
import pytest

from backend.jobs.cluster.leftovers import record_path
from tests.helpers.jobs import wait_for
from tests.helpers.ray_cluster import wait_workers
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload_scenes

pytest.importorskip("ray")

ENV = {"STUDIO_CLUSTER": "ray", "STUDIO_DEFAULT_ENGINE": "morph"}
# From the second studio's start until every Ray process of the first has ended: generous for a
# busy 2-core machine, and still well below the ~62 s the agents live on their own (2 s to see
# the raylet gone, then Ray's fixed 60 s timeout).
GONE_WITHIN_S = 40.0
STOPPED_WITHIN_S = 15.0


def _descendants(pid: int) -> list[tuple[int, float, str]]:
    """(pid, start time, name) of every process under `pid`: an idle studio in Ray mode has no
    children but its Ray's."""
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            found.append((proc.pid, proc.create_time(), proc.name()))
        except psutil.Error:
            pass
    return found


def _alive(processes: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
    """Those of `processes` still running (the same pid and start time, not a zombie)."""
    left = []
    for pid, created, name in processes:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                left.append((pid, created, name))
        except psutil.Error:
            pass
    return left


def _wait_gone(processes, until: float) -> list[tuple[int, float, str]]:
    while (left := _alive(processes)) and time.monotonic() < until:
        time.sleep(0.2)
    return left


def _end(processes) -> None:
    """Whatever a failed run left behind, so no Ray process of this test outlives it."""
    for pid, _, _ in _alive(processes):
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def _recorded_pids(data_dir) -> set[int]:
    try:
        return {p["pid"] for p in json.loads(record_path(data_dir).read_text())["processes"]}
    except (OSError, ValueError, KeyError):
        return set()


def test_a_restart_right_after_kill_9_runs_a_job_and_ends_the_first_studios_ray(tmp_path):
    first = StudioServer(tmp_path, ENV).start()
    leftovers: list[tuple[int, float, str]] = []
    try:
        with httpx.Client(base_url=first.url, timeout=60) as c:
            wait_workers(c, 1)
        leftovers = _descendants(first.process.pid)
        names = [name for _, _, name in leftovers]
        # What the issue is about (process names are cut to 15 characters).
        assert any(n.startswith("ray::DashboardA") for n in names), names
        assert any(n.startswith("ray::RuntimeEnv") for n in names), names
        # The studio rewrites its record at each status round (2 s): a kill before the round after
        # the agents came up would test that race, not the rule. Not asserted, so that the test
        # shows the leftovers' lifetime (below) without the record too.
        deadline = time.monotonic() + 10
        while not {pid for pid, _, _ in leftovers} <= _recorded_pids(first.data_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        first.kill()
        began = time.monotonic()

        second = StudioServer(tmp_path, ENV)
        try:
            second.start()
            with httpx.Client(base_url=second.url, timeout=60) as c:
                wait_workers(c, 1)
                ids = upload_scenes(c, 2, size=(96, 80), hue=50)
                r = c.post(
                    "/api/jobs",
                    json={"engine": "morph", "settings": {"seconds": 2.0, "resolution": 320, "seed": 3}, "images": ids},
                )
                assert r.status_code == 201, r.text
                job = wait_for(c, r.json()["id"], timeout=300)
            assert job["status"] == "completed", job

            left = _wait_gone(leftovers, began + GONE_WITHIN_S)
            assert not left, f"{time.monotonic() - began:.0f} s after the restart began, still running: {left}"

            # A normal stop: the second studio's Ray ends with it, and so does its record.
            ours = _descendants(second.process.pid)
            assert ours
            second.stop()
            stopped = time.monotonic()
            assert second.process.returncode == 0, second.log()
            left = _wait_gone(ours, stopped + STOPPED_WITHIN_S)
            assert not left, f"still running {STOPPED_WITHIN_S:.0f} s after a normal stop: {left}"
            assert not record_path(second.data_dir).exists()
        finally:
            running = second.process is not None and second.process.poll() is None
            rest = _descendants(second.process.pid) if running else []
            second.stop()
            _end(rest)
    finally:
        first.kill()
        _end(leftovers)
