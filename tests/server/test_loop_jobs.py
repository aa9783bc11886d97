"""A looping storyboard through the real server (uvicorn on loopback, the morph engine, real
files): `loop` adds the wrap transition (last image → first), the video starts on the first image
and ends one frame before it, the wrap seam is scored, and the wrap transition re-rolls like any."""

from __future__ import annotations

import httpx
import numpy as np
from PIL import Image

from backend.utils.video_io import probe, read_frames
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload_scenes

SETTINGS = {"seconds": 1.2, "resolution": 64, "seed": 5}  # 37 frames per transition at 64x64


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _images(srv: StudioServer, ids: list[str], size: tuple[int, int]) -> list[np.ndarray]:
    out = []
    for i in ids:
        with Image.open(srv.data_dir / "uploads" / f"{i}.png") as img:
            out.append(np.asarray(img.convert("RGB").resize(size, Image.BICUBIC)))
    return out


def _check_loop(srv: StudioServer, job: dict, ids: list[str]) -> np.ndarray:
    final = read_frames(srv.data_dir / "outputs" / job["id"] / "final.mp4")
    h, w = final.shape[1:3]
    images = _images(srv, ids, (w, h))
    first, last = final[0], final[-1]
    # It opens on image 1, and its last frame is the step before image 1 again: nearer to image 1
    # than to any other, and the wrap (last → first) is a step like the video's own steps.
    # (64-px colour scenes lose a few levels per H.264 pass; a re-joined video has had two.)
    from_images = [_diff(first, im) for im in images]
    assert int(np.argmin(from_images)) == 0 and from_images[0] < 6.0, from_images
    to_images = [_diff(last, im) for im in images]
    assert int(np.argmin(to_images)) == 0, to_images
    steps = [_diff(a, b) for a, b in zip(final, final[1:])]
    assert _diff(last, first) < 3 * float(np.median(steps)) + 2.0, (_diff(last, first), np.median(steps))
    # No repeated frame at the wrap: the last frame is not image 1 itself.
    assert _diff(last, first) > 0.1
    return final


def test_a_morph_loop_job_closes_the_storyboard_and_scores_the_wrap_seam(tmp_path):
    with (
        StudioServer(tmp_path, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        ids = upload_scenes(c, 3, hue=50, name="l{i}")
        body = {
            "images": ids,
            "loop": True,
            "engine": "morph",
            "prompts": ["pan right", None, "zoom out back to the start"],
            "settings": SETTINGS,
        }
        created = c.post("/api/jobs", json=body)
        assert created.status_code == 201, created.text
        job = wait_for(c, created.json()["id"])
        assert job["status"] == "completed", job
        # N images, N transitions: the third goes from image 3 back to image 1.
        assert job["params"]["loop"] is True and len(job["params"]["segments"]) == 3
        assert len(job["transitions"]) == 3 and len(job["segments"]) == 3
        assert [p["original"] for p in job["prompts"]] == ["pan right", "", "zoom out back to the start"]
        # 3 × 37 frames, less the 2 shared keyframes and the closing frame (image 1 again).
        final_path = srv.data_dir / "outputs" / job["id"] / "final.mp4"
        assert probe(final_path).frames == 37 * 3 - 2 - 1 == job["params"]["total_frames"]
        _check_loop(srv, job, ids)
        # Every seam is scored, the wrap (after the last transition, into the first) included.
        seams = [t["seam_after"] for t in job["transitions"]]
        assert all(s is not None and 0.0 <= s["score"] <= 1.0 for s in seams), seams
        assert "cut" not in seams[2]["flags"]


def test_a_loop_job_without_the_wrap_prompt_uses_the_global_one_and_bad_counts_are_refused(tmp_path):
    with (
        StudioServer(tmp_path, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        ids = upload_scenes(c, 2, hue=70, name="p{i}")
        base = {"images": ids, "loop": True, "engine": "morph", "prompt": "slow orbit", "settings": SETTINGS}
        ok = c.post("/api/jobs", json={**base, "prompts": ["dolly in"]})
        assert ok.status_code == 201, ok.text
        job = wait_for(c, ok.json()["id"])
        assert job["status"] == "completed", job
        assert [p["original"] for p in job["prompts"]] == ["dolly in", "slow orbit"]
        assert len(job["transitions"]) == 2
        bad = c.post("/api/jobs", json={**base, "prompts": ["a", "b", "c"]})
        assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
        plain = c.post("/api/jobs", json={**base, "loop": False, "prompts": ["a", "b"]})
        assert plain.status_code == 422


def test_rerolling_the_wrap_transition_keeps_the_loop(tmp_path):
    with (
        StudioServer(tmp_path, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        ids = upload_scenes(c, 3, hue=30, name="r{i}")
        job_id = c.post(
            "/api/jobs", json={"images": ids, "loop": True, "engine": "morph", "settings": SETTINGS}
        ).json()["id"]
        job = wait_for(c, job_id)
        assert job["status"] == "completed", job
        folder = srv.data_dir / "outputs" / job_id
        untouched = [(folder / f"segment_{i:03d}.mp4").stat().st_mtime_ns for i in range(2)]

        answer = c.post(f"/api/jobs/{job_id}/transitions/2/takes", json={"seconds": 2.4, "seed": 77})
        assert answer.status_code == 202, answer.text
        job = wait_for(c, job_id, until=lambda j: j["status"] == "completed" and j["transitions"][2]["chosen"] == 2)
        job = wait_for(c, job_id)
        assert job["status"] == "completed", job
        wrap = job["transitions"][2]
        assert [t["take"] for t in wrap["takes"]] == [1, 2] and wrap["takes"][1]["frames"] == 73
        assert [(folder / f"segment_{i:03d}.mp4").stat().st_mtime_ns for i in range(2)] == untouched
        # The new wrap take ends on image 1 as the first did, and the joined loop still closes.
        take = read_frames(folder / "segment_002_take_2.mp4")
        h, w = take.shape[1:3]
        images = _images(srv, ids, (w, h))
        assert int(np.argmin([_diff(take[0], im) for im in images])) == 2  # from image 3
        assert int(np.argmin([_diff(take[-1], im) for im in images])) == 0  # back to image 1
        assert probe(folder / "final.mp4").frames == 37 + 37 + 73 - 2 - 1 == job["params"]["total_frames"]
        _check_loop(srv, job, ids)
        assert wrap["seam_after"] is not None  # the wrap seam, scored again at the new join
