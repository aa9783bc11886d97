#!/usr/bin/env bash
# A GPU host of a Ray pool in a container (the compose profile `ray`): wait until the head's Ray
# answers, then join it with every GPU this container sees and stay in the foreground (the
# container lives as long as the node). The studio's pool places its workers here; the models come
# from this host's own model folder (docker/entrypoint.sh checked them before this runs).
#
#   STUDIO_RAY_HEAD   the head's address, HOST:PORT (head:6379, the compose service)
#   STUDIO_RAY_NODE_IP  the address this node advertises (the private network's); Ray's own pick if empty
set -euo pipefail

HEAD=${STUDIO_RAY_HEAD:-head:6379}
HOST=${HEAD%:*}
PORT=${HEAD##*:}
export RAY_USAGE_STATS_ENABLED=0

# The head's container may still be downloading the models: its port opens only after that.
waited=0
until (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; do
  if [ $((waited % 60)) -eq 0 ]; then
    echo "[ray] waiting for the head at $HEAD (${waited} s)"
  fi
  sleep 5
  waited=$((waited + 5))
done

args=(--address="$HEAD" --disable-usage-stats --block)
if [ -n "${STUDIO_RAY_NODE_IP:-}" ]; then
  args+=(--node-ip-address="$STUDIO_RAY_NODE_IP")
fi
echo "[ray] joining the cluster: ray start ${args[*]}"
exec ray start "${args[@]}"
