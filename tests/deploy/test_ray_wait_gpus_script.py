"""scripts/ray_wait_gpus.py against real Ray: the compose profile's head waits with it for the GPU
workers to join before the studio starts. A two-node cluster on this machine
(`ray.cluster_utils.Cluster`, bound to a loopback address); the GPU node's GPU is a declared resource."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.helpers.server import ROOT

SCRIPT = ROOT / "scripts" / "ray_wait_gpus.py"
pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
# A loopback address Ray does not rewrite: a driver given 127.0.0.1 replaces it with the address of
# the default route, where this cluster does not listen.
LOOPBACK = "127.0.0.2"


@pytest.fixture
def cluster(tmp_path):
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from ray.cluster_utils import Cluster

    made = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 0, "node_ip_address": LOOPBACK, "include_dashboard": False},
    )
    try:
        yield made
    finally:
        made.shutdown()


def wait(address: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "STUDIO_RAY_NODE_IP": LOOPBACK}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--address", address, "--poll", "0.5", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_the_head_waits_for_a_gpu_node_then_goes_on(cluster):
    # No GPU in the cluster: the wait ends at its timeout, says so, and exits 1 (the head goes on).
    started = time.monotonic()
    out, err = wait(cluster.address, "--gpus", "1", "--timeout", "3").communicate(timeout=120)
    assert "0 of 1 GPU(s); going on" in err, (out, err)
    assert time.monotonic() - started >= 3

    # A GPU node joins while it waits: it returns 0 soon after.
    waiting = wait(cluster.address, "--gpus", "1", "--timeout", "180")
    time.sleep(1.0)
    assert waiting.poll() is None  # still waiting: the head has no GPU
    cluster.add_node(num_cpus=1, num_gpus=1, node_ip_address=LOOPBACK, include_dashboard=False)
    joined = time.monotonic()
    out, err = waiting.communicate(timeout=150)
    assert waiting.returncode == 0, (out, err)
    assert "the cluster has 1 GPU(s)" in out
    assert time.monotonic() - joined < 60

    # Nothing to wait for: 0 GPUs asked returns at once without connecting.
    quick = wait(f"{LOOPBACK}:9", "--gpus", "0")
    assert quick.wait(30) == 0


def test_no_ray_at_the_address_is_exit_2(tmp_path):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = wait(f"127.0.0.1:{port}", "--gpus", "1", "--timeout", "5")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 2, (out, err)
    assert f"no Ray cluster at 127.0.0.1:{port}" in err
