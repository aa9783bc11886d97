"""Unit tests of the core's plain parts: smart parameters, joining, morph, the event fan-out."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from backend.contracts.models import JobCreate, JobSettings
from backend.jobs import params as smart_params
from backend.jobs.fanout import CLIENT_QUEUE_SIZE, WebSocketManager
from backend.pipeline.concatenator import join_segments
from backend.pipeline.morph import morph_transition
from backend.utils.progress import JobCancelled, Progress
from backend.utils.video_io import probe, read_frames, write_video
from tests.helpers.images import scene


@pytest.mark.parametrize(
    "seconds,sections,frames", [(0.3, 1, 37), (1.2, 1, 37), (2.4, 2, 73), (5, 4, 145), (6, 5, 181)]
)
def test_seconds_snap_to_whole_sections(seconds, sections, frames):
    p = smart_params.resolve(JobSettings(seconds=seconds), 1)
    assert p["segments"][0]["sections"] == sections and p["segments"][0]["frames"] == frames


def test_quality_table_ends():
    low, high = (smart_params.resolve(JobSettings(quality=q), 1) for q in (0, 100))
    assert (low["steps"], low["crf"], low["cache"], low["draft"]) == (8, 28, smart_params.DRAFT_CACHE, True)
    assert (high["steps"], high["crf"], high["cache"], high["draft"]) == (25, 16, "off", False)


def test_strength_schedules_the_end_embedding():
    flat = smart_params.end_embed_weights(4, 0)
    full = smart_params.end_embed_weights(4, 100)
    assert flat == [0.5] * 4
    assert full == [0.125, 0.375, 0.625, 0.875]


def test_explicit_values_win_over_suggestions_and_seed_is_stored():
    s = smart_params.Suggestions(seconds=[4.8, 1.2], strength=[90, 10], resolution=512)
    p = smart_params.resolve(JobSettings(), 2, [(100, 100)] * 3, s)
    assert [g["sections"] for g in p["segments"]] == [4, 1] and p["resolution"] == 512
    p = smart_params.resolve(JobSettings(seconds=2.4, strength=50, resolution=256, seed=11), 2, [(100, 100)] * 3, s)
    assert [g["sections"] for g in p["segments"]] == [2, 2] and p["resolution"] == 256
    assert [g["seed"] for g in p["segments"]] == [11, 12]
    assert isinstance(smart_params.resolve(JobSettings(), 1)["seed"], int)


def test_bucket_follows_aspect_ratio():
    p = smart_params.resolve(JobSettings(resolution=640), 1, [(1920, 1080), (1920, 1080)])
    assert p["width"] % 16 == 0 and p["height"] % 16 == 0
    assert abs(p["width"] / p["height"] - 16 / 9) < 0.1
    assert abs(p["width"] * p["height"] - 640 * 640) / (640 * 640) < 0.1


def test_pair_prompts_fall_back_to_the_global_prompt():
    job = JobCreate(images=["a", "b", "c"], prompt="all", prompts=["own", " "])
    assert job.pair_prompts() == ["own", "all"]


def test_join_keeps_the_shared_keyframe_once_and_writes_metadata(tmp_path):
    a = np.full((5, 32, 48, 3), 10, np.uint8)
    b = np.full((7, 32, 48, 3), 200, np.uint8)
    write_video(tmp_path / "a.mp4", a, 30, crf=0)
    write_video(tmp_path / "b.mp4", b, 30, crf=0)
    seen = []
    n = join_segments(
        [tmp_path / "a.mp4", tmp_path / "b.mp4"],
        tmp_path / "out.mp4",
        30,
        16,
        {"studio_params": {"seed": 3}},
        seen.append,
    )
    frames = read_frames(tmp_path / "out.mp4")
    assert n == 11 and frames.shape[0] == 11
    assert abs(float(frames[3].mean()) - 10) < 3 and abs(float(frames[4].mean()) - 200) < 3
    assert json.loads(probe(tmp_path / "out.mp4").metadata["studio_params"]) == {"seed": 3}
    assert seen[-1].fraction == pytest.approx(1.0)
    assert not (tmp_path / "out.partial.mp4").exists()


def test_morph_is_exact_at_both_ends_and_cancellable():
    a = np.asarray(scene(64, 48), np.uint8)
    b = np.asarray(scene(64, 48, shift=10, hue=90), np.uint8)
    frames = morph_transition(a, b, 9)
    assert frames.shape == (9, 48, 64, 3)
    assert np.array_equal(frames[0], a) and np.array_equal(frames[-1], b)
    # The middle is neither end: something moved.
    assert np.abs(frames[4].astype(int) - a).mean() > 1 and np.abs(frames[4].astype(int) - b).mean() > 1

    def stop(p: Progress):
        if p.detail["step"] == 3:
            raise JobCancelled("cancel")

    with pytest.raises(JobCancelled):
        morph_transition(a, b, 9, stop)


class _SlowSocket:
    """A WebSocket whose sends never finish (a client that stopped reading)."""

    def __init__(self):
        self.closed_with = None
        self.sent = 0

    async def accept(self):
        pass

    async def send_text(self, _):
        self.sent += 1
        if self.sent > 1:
            await asyncio.Event().wait()

    async def receive_text(self):
        await asyncio.Event().wait()

    async def receive(self):
        await asyncio.Event().wait()

    async def close(self, code=1000):
        self.closed_with = code


class _FastSocket(_SlowSocket):
    def __init__(self):
        super().__init__()
        self.messages = []

    async def send_text(self, text):
        self.messages.append(json.loads(text))


async def test_a_stuck_client_is_dropped_and_never_delays_the_others():
    manager = WebSocketManager(snapshot=lambda: [])
    slow, fast = _SlowSocket(), _FastSocket()
    tasks = [asyncio.create_task(manager.serve(ws)) for ws in (slow, fast)]
    await asyncio.sleep(0.01)
    for i in range(CLIENT_QUEUE_SIZE + 10):
        manager.publish({"type": "job.progress", "n": i})
        if i % 100 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert manager.client_count == 1  # the stuck one is gone, its socket closed
    assert slow.closed_with == 1013
    assert [m.get("n") for m in fast.messages[1:]] == list(range(CLIENT_QUEUE_SIZE + 10))
    assert fast.messages[0]["type"] == "snapshot"
    for t in tasks:
        t.cancel()


def test_joiner_drops_exactly_the_shared_frame_across_chunks(tmp_path):
    from backend.pipeline.concatenator import SegmentJoiner

    # Frame brightness encodes (segment, index); segment A ends on the keyframe B starts on.
    a = np.stack([np.full((16, 16, 3), 4 * i, np.uint8) for i in range(20)])
    b = np.stack([np.full((16, 16, 3), 120 + 4 * i, np.uint8) for i in range(25)])
    streamed = SegmentJoiner(tmp_path / "s.mp4", 30, 0)
    for seg in (a, b):
        streamed.add(seg[:16], starts_segment=True)
        streamed.add(seg[16:], starts_segment=False)
    assert streamed.finish() == 44
    write_video(tmp_path / "a.mp4", a, 30, crf=0)
    write_video(tmp_path / "b.mp4", b, 30, crf=0)
    assert join_segments([tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "j.mp4", 30, 0) == 44
    for name in ("s.mp4", "j.mp4"):
        means = read_frames(tmp_path / name).reshape(44, -1).mean(axis=1)
        assert np.allclose(means[:19], 4 * np.arange(19), atol=3)  # A without its last frame
        assert np.allclose(means[19:], 120 + 4 * np.arange(25), atol=3)  # all of B


def test_the_web_layer_imports_no_torch():
    """Routes, queue and app never touch torch: only the engines import it, lazily, on the worker."""
    import subprocess
    import sys

    code = (
        "import sys, backend.app, backend.web.routes.jobs, backend.jobs.queue; "
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
