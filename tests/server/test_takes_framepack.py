"""Takes with the tiny random FramePack model (the real generator on the CPU, its real loading path),
not only the morph engine: best of 2 makes two seeded takes per transition, scores both from their
files and chooses the higher; a re-roll of one transition leaves the other's file untouched."""

from __future__ import annotations

import httpx

from backend.utils.video_io import probe
from tests.helpers.images import encoded, scene
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer


def test_best_of_two_and_a_reroll_with_the_tiny_framepack_model(tmp_path, tiny_framepack_dir):
    with (
        StudioServer(tmp_path, {"FRAMEPACK_DIR": str(tiny_framepack_dir)}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        files = [
            ("files", (f"i{i}.png", encoded(scene(96, 80, shift=8 * i, hue=50 * i)), "image/png")) for i in range(3)
        ]
        ids = [u["id"] for u in c.post("/api/uploads", files=files).json()["uploads"]]
        body = {
            "images": ids,
            "engine": "framepack",
            "settings": {"seconds": 1.2, "quality": 10, "resolution": 64, "seed": 7, "takes_per_transition": 2},
        }
        r = c.post("/api/jobs", json=body)
        assert r.status_code == 201, r.text
        job = wait_for(c, r.json()["id"], timeout=600)
        assert job["status"] == "completed", job
        for transition in job["transitions"]:
            takes = transition["takes"]
            assert [t["take"] for t in takes] == [1, 2] and all(t["status"] == "done" for t in takes)
            assert takes[0]["seed"] != takes[1]["seed"]
            scores = [t["overall"] for t in takes]
            assert all(isinstance(s, (int, float)) for s in scores)
            chosen = [t["take"] for t in takes if t["chosen"]]
            assert chosen == [1 + scores.index(max(scores))]  # ties go to the lower take number
        folder = srv.data_dir / "outputs" / job["id"]
        first = folder / "segment_000.mp4"
        made = first.stat().st_mtime_ns

        r = c.post(f"/api/jobs/{job['id']}/transitions/1/takes", json={"seed": 123})
        assert r.status_code == 202, r.text
        job = wait_for(c, job["id"], timeout=600)
        assert job["status"] == "completed", job
        assert first.stat().st_mtime_ns == made  # transition 1 was not generated again
        new = job["transitions"][1]["takes"][-1]
        assert (new["take"], new["seed"], new["status"], new["chosen"]) == (3, 123, "done", True)
        frames = [next(t["frames"] for t in tr["takes"] if t["chosen"]) for tr in job["transitions"]]
        assert probe(folder / "final.mp4").frames == sum(frames) - 1  # one shared key frame at the seam
        assert job["params"]["total_frames"] == sum(frames) - 1  # the stored parameters follow the video
