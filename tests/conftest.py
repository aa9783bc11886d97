from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Each folder of tests/ and the markers its tests get (pytest.ini registers them; README.md says which
# to leave out for the inner loop). A test file lives in one of these folders
# (tests/unit/test_test_layout.py checks it), so every test has at least its folder's marker.
FOLDER_MARKERS = {
    "unit": ("unit",),  # pure functions and classes: no server, no browser, no model files
    "server": ("server",),  # the studio's web and job layers for real: uvicorn, TestClient or the queue in-process
    "pipeline": ("pipeline",),  # engines, FramePack's memory machinery, post-processing, scores (tiny models)
    "browser": ("browser",),  # the pages in Debian's Chromium
    "cluster": ("cluster", "ray"),  # a real Ray cluster on this machine
    "deploy": ("deploy",),  # set-up scripts, Docker files, the notebook, fresh clones
}


# Modules whose tests pytest-xdist may spread over both workers, one group per test function (see
# `xdist_group`): their tests do not depend on one another's order, and their module fixtures may
# start once on each worker. The Ray pool's module is most of the Ray tests' time.
GROUP_PER_TEST = {"tests/cluster/test_ray_pool.py"}


def xdist_group(nodeid: str) -> str:
    """Which tests share one worker under `--dist loadgroup` (scripts/test.sh): a module's tests stay
    together (its module-scoped server, browser or Ray cluster starts once), except in the modules
    of `GROUP_PER_TEST`. From the test's id alone, as the scheduler (`pytest_xdist_make_scheduler`)
    sees nothing else. Every container test lives in one module (tests/unit/test_tests_layout.py
    checks it), so they run one after another: two image builds at once would fight over podman's
    store. Ray tests are grouped like the rest: each worker's Ray has a temp dir of its own
    (`_ray_temp_dir`) and binds the ports the kernel picks, so two workers' clusters run side by side."""
    if nodeid.rfind("@") > nodeid.rfind("]"):  # a group name pytest-xdist appended (pytest < 9)
        nodeid = nodeid[: nodeid.rfind("@")]
    module, _, rest = nodeid.partition("::")
    if module in GROUP_PER_TEST and rest:
        return f"{module}::{rest.split('[', 1)[0]}"
    return module


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist is a dev requirement; plain pytest runs without it
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:

    class _GroupScheduling(LoadScopeScheduling):
        """`--dist loadgroup` by `xdist_group`, groups handed out in collection order.

        pytest-xdist 3.8 groups by the `xdist_group` marker's name, which it appends to each test's
        id; pytest 9 keeps ids elsewhere, so that name never arrives and every test was a group of
        its own (module fixtures started on both workers, any two tests side by side). Collection
        order is `_heaviest_first`'s: pytest-xdist would otherwise send the groups with the most
        tests first, and the few long container and Ray tests last, one worker ending minutes after
        the other."""

        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    def pytest_xdist_make_scheduler(config, log):
        if config.getvalue("dist") != "loadgroup":
            return None
        config.option.loadscopereorder = False
        return _GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        parts = Path(item.fspath).resolve().relative_to(tests_dir).parts
        for name in FOLDER_MARKERS.get(parts[0], ()) if len(parts) > 1 else ():
            item.add_marker(name)
    items[:] = _heaviest_first(items)


# The kinds of test that take longest, by marker, longest first: an image build, a Ray cluster, the
# tests marked slow, a browser.
_HEAVY_MARKERS = ("container", "ray", "slow", "browser")


def _heaviest_first(items: list) -> list:
    """The tests by group (`xdist_group`), the groups of longer kinds first (`_HEAVY_MARKERS`, the
    heaviest of its tests decides), otherwise in collection order, each group's tests in their own
    order. A worker takes the next group when it has little left, so the long ones start early and
    the short ones fill the end, where they even out the two workers."""

    def rank(item) -> int:
        return next((i for i, name in enumerate(_HEAVY_MARKERS) if item.get_closest_marker(name)), len(_HEAVY_MARKERS))

    groups = {item: xdist_group(item.nodeid) for item in items}
    first_seen: dict[str, int] = {}
    group_rank: dict[str, int] = {}
    for index, item in enumerate(items):
        group = groups[item]
        first_seen.setdefault(group, index)
        group_rank[group] = min(group_rank.get(group, len(_HEAVY_MARKERS)), rank(item))
    return sorted(items, key=lambda item: (group_rank[groups[item]], first_seen[groups[item]]))


@pytest.fixture(scope="session", autouse=True)
def _ray_temp_dir():
    """A Ray temp dir for this test process alone (each xdist worker, or the one process), through
    RAY_TMPDIR: the clusters the tests start (`ray.cluster_utils.Cluster`, in this process), the
    studios' own Rays (`ray.init(address="local")` in a server subprocess, which inherits the
    environment) and their workers keep their sessions, sockets and `ray_current_cluster` there,
    not in the /tmp/ray every Ray on this machine shares. Ports need nothing: Ray 2.60 lets the
    kernel pick every port it is not given (GCS, raylet, object manager, agents, workers), so a
    clash is impossible, where ports derived from the worker id would clash with another test run
    on the same machine (its gw0 is ours too). Short, under /tmp: Ray's Unix sockets live a few
    folders down and a socket path has at most 107 characters."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    before = os.environ.get("RAY_TMPDIR")
    path = tempfile.mkdtemp(prefix=f"ray-{worker}-", dir=base)
    os.environ["RAY_TMPDIR"] = path
    try:
        yield Path(path)
    finally:
        if before is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = before
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_framepack_dir(tmp_path_factory) -> Path:
    """The tiny random FramePack pipeline, saved once per test session in diffusers layout."""
    from tests.helpers.tiny_framepack import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("framepack") / "pipeline")


@pytest.fixture(autouse=True)
def _fresh_unreachable_hosts():
    """Each test starts with no memory of unreachable hosts (loopback ports are reused)."""
    from backend.utils.downloads import forget_unreachable

    forget_unreachable()
    try:
        from huggingface_hub import constants
    except ImportError:
        constants = None
    offline = constants.HF_HUB_OFFLINE if constants is not None else None
    yield
    if constants is not None:  # the hub probe may have switched huggingface_hub offline
        from backend.utils import model_registry

        constants.HF_HUB_OFFLINE = offline
        model_registry._hub_offline_by_us = False
