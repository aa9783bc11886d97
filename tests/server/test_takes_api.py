"""Takes through the real server (uvicorn on loopback, the morph engine, real files): re-rolling one
transition regenerates only it, choosing and rebuilding re-joins the chosen takes, and the rules
for deleting and choosing answer with catalogue codes."""

from __future__ import annotations

import httpx
import numpy as np

from backend.utils.video_io import probe, read_frames
from tests.helpers.jobs import wait_for
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload_scenes


def _upload(c: httpx.Client, n: int) -> list[str]:
    return upload_scenes(c, n, hue=40, name="i{i}")


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_rerolling_one_transition_regenerates_only_it_and_rebuild_joins_the_chosen_takes(tmp_path):
    with (
        StudioServer(tmp_path, {"STUDIO_DEFAULT_ENGINE": "morph"}) as srv,
        httpx.Client(base_url=srv.url, timeout=60) as c,
    ):
        ids = _upload(c, 4)
        job_id = c.post("/api/jobs", json={"images": ids, "settings": {"seconds": 1.2, "resolution": 64}}).json()["id"]
        job = wait_for(c, job_id)
        assert job["status"] == "completed", job
        folder = srv.data_dir / "outputs" / job_id
        files = [folder / f"segment_{i:03d}.mp4" for i in range(3)]
        made = [f.stat().st_mtime_ns for f in files]
        first_frames = [t["takes"][0]["frames"] for t in job["transitions"]]

        # Transition 2 (index 1) again, longer: only it is generated.
        answer = c.post(f"/api/jobs/{job_id}/transitions/1/takes", json={"seconds": 2.4, "seed": 99})
        assert answer.status_code == 202, answer.text
        assert [t["take"] for t in answer.json()["transitions"][1]["takes"]] == [1, 2]
        # While it is queued or running its takes cannot change.
        busy = c.post(f"/api/jobs/{job_id}/rebuild")
        job = wait_for(c, job_id)
        assert job["status"] == "completed", job
        if busy.status_code != 202:
            assert busy.status_code == 409 and busy.json()["code"] == "job_busy"
        job = wait_for(c, job_id)
        assert [f.stat().st_mtime_ns for f in files] == made  # take 1 of every transition untouched
        t2 = job["transitions"][1]
        new = t2["takes"][1]
        assert (new["take"], new["status"], new["seed"], new["seconds"], new["chosen"]) == (2, "done", 99, 2.433, True)
        assert new["frames"] == 73 and new["overall"] is not None
        take_file = folder / "segment_001_take_2.mp4"
        assert take_file.exists() and new["video_url"] == f"/files/outputs/{job_id}/segment_001_take_2.mp4"
        # The job's video was joined with the new take: 37 + 73 + 37 frames, less the 2 shared ones.
        assert probe(folder / "final.mp4").frames == 37 + 73 + 37 - 2
        assert job["params"]["total_frames"] == 37 + 73 + 37 - 2  # the parameters say what the video is now
        assert [t["chosen"] for t in job["transitions"]] == [1, 2, 1]

        # Back to take 1 and rebuild: no take is generated, the video holds take 1's frames again.
        chose = c.post(f"/api/jobs/{job_id}/transitions/1/choose", json={"take": 1})
        assert chose.status_code == 200 and chose.json()["transitions"][1]["chosen"] == 1
        assert c.post(f"/api/jobs/{job_id}/rebuild").status_code == 202
        job = wait_for(c, job_id, until=lambda j: j["status"] == "completed" and j["stage"] == "done")
        job = wait_for(c, job_id)
        assert [f.stat().st_mtime_ns for f in files] == made
        final = read_frames(folder / "final.mp4")
        assert len(final) == sum(first_frames) - 2 == 37 * 3 - 2
        take1, take2 = read_frames(files[1]), read_frames(take_file)
        middle = final[36 : 36 + 37]  # transition 2 starts on transition 1's last frame
        assert _diff(middle, take1) < 3.0, _diff(middle, take1)
        # And it is not take 2 (whose frames differ from take 1's in the same place).
        assert _diff(middle[1:-1], take2[1:36]) > 3 * _diff(middle, take1)

        # Deleting: never the chosen take, never the last; another one goes with its file.
        chosen = c.delete(f"/api/jobs/{job_id}/transitions/1/takes/1")
        assert chosen.status_code == 409 and chosen.json()["code"] == "take_is_chosen"
        last = c.delete(f"/api/jobs/{job_id}/transitions/0/takes/1")
        assert last.status_code == 409 and last.json()["code"] == "take_is_last"
        gone = c.delete(f"/api/jobs/{job_id}/transitions/1/takes/2")
        assert gone.status_code == 200 and [t["take"] for t in gone.json()["transitions"][1]["takes"]] == [1]
        assert not take_file.exists()
        # Unknown transition and take, and a take that is not there, in both languages.
        for answer, code, status in (
            (c.post(f"/api/jobs/{job_id}/transitions/3/takes", json={}), "transition_not_found", 404),
            (c.post(f"/api/jobs/{job_id}/transitions/0/choose", json={"take": 5}), "take_not_found", 404),
            (c.delete(f"/api/jobs/{job_id}/transitions/0/takes/9"), "take_not_found", 404),
            (c.post("/api/jobs/nope/rebuild"), "job_not_found", 404),
        ):
            assert answer.status_code == status and answer.json()["code"] == code, answer.text
            assert " / " in answer.json()["detail"]
        bad = c.post(f"/api/jobs/{job_id}/transitions/0/takes", json={"seconds": -1})
        assert bad.status_code == 422
        too_many = c.post("/api/jobs", json={"images": ids, "settings": {"takes_per_transition": 5}})
        assert too_many.status_code == 422 and too_many.json()["code"] == "job_too_many_takes"
