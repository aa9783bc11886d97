#!/usr/bin/env bash
# First start: download the models into the /models volume (progress shows in
# `docker compose logs -f`). Later starts find the download manifest complete and go straight
# to the server. A failed download does not stop the studio: /api/health names what is missing,
# and the next start (or `docker compose restart`) resumes where it stopped.
set -euo pipefail
cd /app

MODELS_DIR=${STUDIO_MODELS_DIR:-/models}
ENV_FILE=${STUDIO_MODELS_ENV:-$MODELS_DIR/studio-paths.env}

if [ "${STUDIO_SKIP_MODEL_DOWNLOAD:-0}" != 1 ]; then
  echo "[entrypoint] checking models in $MODELS_DIR"
  if ! python scripts/download_models.py --base-dir "$MODELS_DIR" --env-file "$ENV_FILE"; then
    echo "[entrypoint] some models are missing; starting anyway (see /api/health)" >&2
  fi
fi

# The paths the download resolved, for the settings (the compose .env stays as the user wrote it).
if [ -f "$ENV_FILE" ]; then
  set -a
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  set +a
fi

exec "$@"
