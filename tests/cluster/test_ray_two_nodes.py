"""A two-node Ray cluster on one machine (`ray.cluster_utils.Cluster`, as Ray's own tests build
one): the pool puts a worker on each node and a job's transitions run on both, and a studio
restart in the middle of a job resumes it with its finished transitions kept."""

from __future__ import annotations

from functools import partial

import httpx
import pytest

from tests.helpers.jobs import EventLog, wait_for
from tests.helpers.jobs import transition_spans as _spans
from tests.helpers.ray_cluster import ray_cluster, ray_env, wait_running, wait_workers, workers
from tests.helpers.server import StudioServer
from tests.helpers.uploads import upload_scenes

pytest.importorskip("ray")


_upload = partial(upload_scenes, size=(96, 80), hue=50, name="i{i}")  # as test_cluster_ray.py's


@pytest.fixture(scope="module")
def two_nodes():
    with ray_cluster([{"num_gpus": 1, "num_cpus": 1}, {"num_gpus": 1, "num_cpus": 1}]) as c:
        yield c


def test_a_job_runs_on_both_nodes(tmp_path, two_nodes):
    body = {"engine": "morph", "settings": {"seconds": 4.8, "resolution": 256, "seed": 2}}
    with StudioServer(tmp_path, ray_env(two_nodes)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        pool = wait_workers(c, 2)
        assert len({w["node_id"] for w in pool}) == 2, pool  # one worker on each node
        ids = _upload(c, 4)
        log = EventLog(srv, 300)
        job_id = c.post("/api/jobs", json=dict(body, images=ids)).json()["id"]
        job = wait_for(c, job_id, timeout=300)
        events = log.wait({job_id})
        assert job["status"] == "completed", job
        done = {w["name"]: w["done"] for w in workers(c)}
    spans = _spans(events, job_id)
    assert set().union(*(w for _, _, w in spans.values())) == {"worker-1", "worker-2"}
    assert all(count >= 1 for count in done.values()), done


def test_a_studio_restart_mid_job_resumes_it_with_its_finished_transitions(tmp_path, two_nodes, tiny_framepack_dir):
    body = {"engine": "framepack", "settings": {"seconds": 2.4, "quality": 60, "resolution": 64, "seed": 4}}
    env = {"FRAMEPACK_DIR": str(tiny_framepack_dir), **ray_env(two_nodes)}
    srv = StudioServer(tmp_path, env).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            wait_workers(c, 2)
            ids = _upload(c, 5)
            job_id = c.post("/api/jobs", json=dict(body, images=ids)).json()["id"]

            def some_done(j):
                return any(t["status"] == "done" for tr in j["transitions"] for t in tr["takes"])

            job = wait_for(c, job_id, until=some_done, timeout=600)
        folder = srv.data_dir / "outputs" / job_id
        done = [tr["index"] for tr in job["transitions"] if tr["takes"][0]["status"] == "done"]
        kept = {f"segment_{i:03d}.mp4": (folder / f"segment_{i:03d}.mp4").stat().st_mtime_ns for i in done}
        assert kept
        srv.kill()  # kill -9 of the studio: its Ray driver and the workers' takes go with it
    finally:
        srv.stop()
    with StudioServer(tmp_path, env, port=srv.port) as again, httpx.Client(base_url=again.url, timeout=60) as c:
        job = wait_for(c, job_id, timeout=600)
        assert job["status"] == "completed", job
        for transition in job["transitions"]:
            assert [(t["take"], t["status"]) for t in transition["takes"]] == [(1, "done")]
        names = sorted(p.name for p in folder.iterdir() if p.name.startswith(("segment_", ".waiting")))
        assert names == [f"segment_{i:03d}.mp4" for i in range(4)], names
        for name, made in kept.items():
            assert (folder / name).stat().st_mtime_ns == made, f"{name} was made again"
        assert len(workers(c)) == 2  # the first studio's workers died with it; these are the new one's


def test_a_worker_host_that_leaves_mid_job_has_its_transition_moved(tmp_path, two_nodes, tiny_framepack_dir):
    """Last in this module: it takes a node out of the cluster."""
    body = {"engine": "framepack", "settings": {"seconds": 2.4, "quality": 60, "resolution": 64, "seed": 6}}
    env = {"FRAMEPACK_DIR": str(tiny_framepack_dir), **ray_env(two_nodes)}
    other = next(n for n in two_nodes.list_all_nodes() if n is not two_nodes.head_node)
    with StudioServer(tmp_path, env) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        wait_workers(c, 2)
        ids = _upload(c, 4)
        job_id = c.post("/api/jobs", json=dict(body, images=ids)).json()["id"]
        wait_running(c, lambda w: w["node_id"] == other.node_id)
        two_nodes.remove_node(other)  # the host leaves: its raylet and worker processes end
        job = wait_for(c, job_id, timeout=600)
        assert job["status"] == "completed", job
        for transition in job["transitions"]:
            assert [(t["take"], t["status"]) for t in transition["takes"]] == [(1, "done")]
        folder = srv.data_dir / "outputs" / job_id
        names = sorted(p.name for p in folder.iterdir() if p.name.startswith(("segment_", ".waiting")))
        assert names == ["segment_000.mp4", "segment_001.mp4", "segment_002.mp4"], names
        states = {w["name"]: w["state"] for w in workers(c)}
        assert sorted(states.values()) == ["idle", "lost"], states  # its worker has no GPU to restart on
