from __future__ import annotations

import sys
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


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        parts = Path(item.fspath).resolve().relative_to(tests_dir).parts
        for name in FOLDER_MARKERS.get(parts[0], ()) if len(parts) > 1 else ():
            item.add_marker(name)
        item.add_marker(pytest.mark.xdist_group(_xdist_group(item)))


def _xdist_group(item) -> str:
    """With pytest-xdist (`--dist loadgroup`, scripts/test.sh), which tests share one worker: a
    module's tests stay together (its module-scoped server and browser are started once), and every
    test that starts a Ray cluster or a container runs on the same worker, one after another (two
    clusters or two image builds at once would fight over ports, processes and disk)."""
    if item.get_closest_marker("ray"):
        return "ray"
    if item.get_closest_marker("container"):
        return "container"
    return item.nodeid.split("::", 1)[0]


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
