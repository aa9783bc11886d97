from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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
