"""Keyframes inside a transition on the Ray pool: a real Ray cluster on loopback with two fake GPUs,
a real studio server as its driver, the tiny random FramePack and Wan models. The keyframe images
travel with each take to the worker (an engine refuses a plan whose keyframe images did not come
with it, so a finished take is one made with them), and a re-roll on the pool keeps the transition's keyframes.

Not compared frame for frame with an embedded studio: for transitions longer than the Ray pool test's
(two FramePack sections, 21 Wan frames) the pool's files and an embedded studio's differ now and
then even without keyframes (seen on this 2-core machine), so such a check would be flaky."""

from __future__ import annotations

import httpx
import pytest

from backend.utils.model_registry import WAN_FOLDER
from tests.helpers.jobs import wait_for
from tests.helpers.ray_cluster import ray_cluster, ray_env, wait_workers
from tests.helpers.server import StudioServer
from tests.helpers.tiny_wan import save_tiny_pipeline
from tests.helpers.uploads import upload_scenes

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    with ray_cluster([{"num_gpus": 2, "num_cpus": 2}]) as c:
        yield c


def _job(c: httpx.Client, body: dict, keyframes: list[dict]) -> dict:
    ids = upload_scenes(c, 4, size=(96, 80), hue=50, name="i{i}")
    # Images 1 → 2 → 3; image 4 is the keyframe of both transitions.
    request = dict(body, images=ids[:3], keyframes=[dict(k, image=ids[3]) for k in keyframes])
    r = c.post("/api/jobs", json=request)
    assert r.status_code == 201, r.text
    job = wait_for(c, r.json()["id"], timeout=600)
    assert job["status"] == "completed", job
    return job


@pytest.mark.parametrize(
    ("engine", "settings", "at", "placed"),
    [
        ("framepack", {"seconds": 2.4, "quality": 40, "resolution": 64, "seed": 7}, 1.2, (1, 1.2)),
        ("wan", {"seconds": 1.2, "quality": 40, "resolution": 64, "seed": 7}, 0.5, (2, 0.5)),
    ],
)
def test_keyframes_run_on_the_pool_and_a_reroll_keeps_them(
    tmp_path_factory, cluster, tiny_framepack_dir, engine, settings, at, placed
):
    env = {"FRAMEPACK_DIR": str(tiny_framepack_dir)}
    if engine == "wan":
        root = tmp_path_factory.mktemp("wan_models")
        save_tiny_pipeline(root / WAN_FOLDER)
        env["STUDIO_MODELS_DIR"] = str(root)
    body = {"engine": engine, "settings": settings}
    keyframes = [{"transition": 0, "at": at}, {"transition": 1, "at": at}]
    tmp = tmp_path_factory.mktemp(f"keyframes-{engine}")
    with StudioServer(tmp / "ray", {**env, **ray_env(cluster)}) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        wait_workers(c, 2)
        job = _job(c, body, keyframes)
        assert [[(k["point"], k["lands_at"]) for k in s["keyframes"]] for s in job["params"]["segments"]] == [
            [placed],
            [placed],
        ]
        assert all(t["takes"][0]["status"] == "done" for t in job["transitions"])
        folder = srv.data_dir / "outputs" / job["id"]
        assert all((folder / f"segment_{i:03d}.mp4").exists() for i in range(2))

        r = c.post(f"/api/jobs/{job['id']}/transitions/1/takes", json={"seed": 21})
        assert r.status_code == 202, r.text
        job = wait_for(c, job["id"], timeout=600)
        assert job["status"] == "completed", job
        take = job["transitions"][1]["takes"][-1]
        assert (take["take"], take["status"], [(k["point"], k["lands_at"]) for k in take["keyframes"]]) == (
            2,
            "done",
            [placed],
        )
