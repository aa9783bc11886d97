"""A real Ray cluster on this machine for the pool's tests: fake GPU resources, loopback only, no
usage statistics. Started with `ray.cluster_utils.Cluster` (as Ray's own tests do), never joined
by the test process itself: the studio under test is the only driver."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import httpx

LOOPBACK = "127.0.0.1"


@contextlib.contextmanager
def ray_cluster(nodes: list[dict]) -> Iterator[object]:
    """`nodes[0]` is the head's resources (e.g. {"num_gpus": 2, "num_cpus": 2}), the rest are
    more nodes of the same cluster."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Every node takes loopback as its address (Ray's switch for single-machine set-ups): nothing
    # of these clusters listens beyond this machine.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"node_ip_address": LOOPBACK, "include_dashboard": False, **nodes[0]},
    )
    try:
        for node in nodes[1:]:
            cluster.add_node(node_ip_address=LOOPBACK, **node)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def ray_env(cluster) -> dict[str, str]:
    return {"STUDIO_CLUSTER": "ray", "STUDIO_RAY_ADDRESS": cluster.address}


def workers(client: httpx.Client) -> list[dict]:
    return client.get("/api/system").json()["cluster"]["workers"]


def _until(client: httpx.Client, keep, count: int, timeout: float, interval: float) -> tuple[list, list]:
    """Polls the pool until `count` workers pass `keep`; (every worker, those that passed)."""
    deadline = time.monotonic() + timeout
    seen: list[dict] = []
    while time.monotonic() < deadline:
        seen = workers(client)
        found = [w for w in seen if keep(w)]
        if len(found) >= count:
            return seen, found
        time.sleep(interval)
    raise AssertionError(f"not {count} worker(s) as wanted in {timeout}s: {seen}")


def wait_workers(client: httpx.Client, count: int, timeout: float = 180.0, state: str = "idle") -> list[dict]:
    """Until `count` workers answer (their engines are built): a job's takes wait for them anyway,
    but tests that time or kill workers start from a pool that is up."""
    return _until(client, lambda w: w["state"] == state, count, timeout, 0.2)[0]


def wait_running(client: httpx.Client, which, count: int = 1, timeout: float = 300.0) -> list[dict]:
    """Until `count` workers for which `which(worker)` holds are running something."""
    return _until(client, lambda w: bool(w["running"]) and which(w), count, timeout, 0.05)[1]
