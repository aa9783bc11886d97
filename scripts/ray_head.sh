#!/usr/bin/env bash
# The studio host of a Ray pool in one container (the compose profile `ray`): start Ray's head
# here with no GPU of its own, wait for the GPU workers to join, then run the studio ("$@", after
# docker/entrypoint.sh has checked the models) as a driver of that cluster.
#
#   STUDIO_RAY_PORT        the head's GCS port (6379); workers join at HEAD:PORT
#   STUDIO_RAY_NODE_IP     the address Ray advertises (the private network's); Ray's own pick if empty
#   STUDIO_RAY_WAIT_GPUS   GPUs to wait for before the studio starts (1; 0 does not wait)
#   STUDIO_RAY_WAIT_S      how long to wait for them at most (600); the studio starts anyway then
#
# Ray's ports have no authentication: nothing here publishes them; keep them on a private network.
set -euo pipefail

PORT=${STUDIO_RAY_PORT:-6379}
export RAY_USAGE_STATS_ENABLED=0

args=(--head --port="$PORT" --num-gpus=0 --disable-usage-stats)
if [ -n "${STUDIO_RAY_NODE_IP:-}" ]; then
  args+=(--node-ip-address="$STUDIO_RAY_NODE_IP")
fi
echo "[ray] starting the head: ray start ${args[*]}"
ray start "${args[@]}"

python "$(dirname "$0")/ray_wait_gpus.py" --address auto \
  --gpus "${STUDIO_RAY_WAIT_GPUS:-1}" --timeout "${STUDIO_RAY_WAIT_S:-600}" || true

export STUDIO_CLUSTER=ray
export STUDIO_RAY_ADDRESS=${STUDIO_RAY_ADDRESS:-auto}
exec "$@"
