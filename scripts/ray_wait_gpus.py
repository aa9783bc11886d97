"""Wait until a Ray cluster has GPUs, so a studio started next sees the GPU hosts as workers.

    python scripts/ray_wait_gpus.py --address 127.0.0.1:6379 --gpus 1 --timeout 600

The studio sizes its pool from the cluster it finds (`STUDIO_RAY_WORKERS=0`: one worker per GPU);
in a compose profile the GPU worker containers join the head seconds after its Ray is up, so the
head waits for them here before starting the studio. Exits 0 once the cluster has `--gpus` GPUs,
1 after `--timeout` seconds without them (the caller goes on anyway and says so), 2 when no Ray
answers at the address.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time


def _answers(address: str, timeout_s: float = 5.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="auto", help="the cluster's GCS address (HOST:PORT) or auto")
    parser.add_argument("--gpus", type=float, default=1.0, help="GPUs the cluster must have; 0 returns at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait at most")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks")
    args = parser.parse_args(argv)
    if args.gpus <= 0:
        return 0
    # This script starts no Ray of its own, but the driver it connects as must not report either.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.address != "auto" and not _answers(args.address):
        # ray.init would retry a closed port for minutes.
        print(f"[ray] no Ray cluster at {args.address}: nothing listens there", file=sys.stderr)
        return 2
    import ray

    try:
        # The driver must name the node it runs on as the node knows itself (`ray start
        # --node-ip-address`); Ray's own guess is the address of the default route.
        node_ip = os.environ.get("STUDIO_RAY_NODE_IP") or None
        ray.init(address=args.address, logging_level="ERROR", log_to_driver=False, _node_ip_address=node_ip)
    except Exception as exc:  # ConnectionError, or a version mismatch with the cluster
        print(f"[ray] no Ray cluster at {args.address}: {exc}", file=sys.stderr)
        return 2
    try:
        deadline = time.monotonic() + args.timeout
        said = 0.0
        while True:
            gpus = float(ray.cluster_resources().get("GPU", 0.0))
            if gpus >= args.gpus:
                print(f"[ray] the cluster has {gpus:g} GPU(s)", flush=True)
                return 0
            now = time.monotonic()
            if now >= deadline:
                print(
                    f"[ray] after {args.timeout:g} s the cluster has {gpus:g} of {args.gpus:g} GPU(s); going on",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            if now - said >= 30:
                print(f"[ray] waiting for GPU workers to join: {gpus:g} of {args.gpus:g} GPU(s)", flush=True)
                said = now
            time.sleep(min(args.poll, max(0.0, deadline - now)))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
