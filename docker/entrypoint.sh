#!/usr/bin/env bash
# First start: download the models into the /models volume (progress shows in
# `docker compose logs -f`). Later starts find the download manifest complete and go straight
# to the server. A failed download does not stop the studio: /api/health names what is missing,
# and a start after STUDIO_DOWNLOAD_RETRY_H hours resumes where it stopped.
set -euo pipefail
cd /app

MODELS_DIR=${STUDIO_MODELS_DIR:-/models}
ENV_FILE=${STUDIO_MODELS_ENV:-$MODELS_DIR/studio-paths.env}

# A start whose downloads failed is remembered in the models volume, so restarts within
# STUDIO_DOWNLOAD_RETRY_H hours do not wait on an unreachable hub again; after that (or with 0,
# or a fresh models volume) the next start tries again and resumes the partial files.
ATTEMPT_FILE="$MODELS_DIR/.download-failed-at"
RETRY_H=${STUDIO_DOWNLOAD_RETRY_H:-12}

recent_failure() {
  [ -f "$ATTEMPT_FILE" ] || return 1
  local failed_at now
  failed_at=$(cat "$ATTEMPT_FILE" 2>/dev/null || echo 0)
  now=$(date +%s)
  case "$failed_at" in ''|*[!0-9]*) return 1 ;; esac
  [ $((now - failed_at)) -lt $((RETRY_H * 3600)) ]
}

if [ "${STUDIO_SKIP_MODEL_DOWNLOAD:-0}" = 1 ]; then
  echo "[entrypoint] STUDIO_SKIP_MODEL_DOWNLOAD=1: not checking models"
elif recent_failure; then
  echo "[entrypoint] skipping the model downloads: they failed at $(date -d "@$(cat "$ATTEMPT_FILE")" -u '+%Y-%m-%d %H:%M UTC')" \
       "(tried again after ${RETRY_H} h; STUDIO_DOWNLOAD_RETRY_H=0 tries at every start). /api/health names what is missing." >&2
else
  echo "[entrypoint] checking models in $MODELS_DIR"
  if python scripts/download_models.py --base-dir "$MODELS_DIR" --env-file "$ENV_FILE"; then
    rm -f "$ATTEMPT_FILE"
  else
    date +%s >"$ATTEMPT_FILE" 2>/dev/null || true
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
