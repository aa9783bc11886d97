#!/usr/bin/env bash
# One set-up for Colab, Docker and a local machine.
#
#   bash scripts/setup.sh --base-dir DIR [--skip-models] [--only framepack|post|analysis|wan|wan22] [--dev]
#                         [--no-venv] [--skip-python] [--require-models]
#
# 1. Python packages: PyTorch matching this machine (CUDA build picked from the driver's CUDA
#    version; the PyPI CPU build without a GPU; Colab's own torch is kept), then requirements.txt.
# 2. Frontend: `npm ci --prefix frontend` when npm and frontend/package-lock.json exist.
# 3. --dev: test tools too (requirements-dev.txt; Debian's chromium and shellcheck via apt-get).
# 4. Models into DIR (scripts/download_models.py), resolved paths written into .env.
#    Models that cannot be fetched (no network, the hub down) leave set-up successful with a
#    summary of what is missing: the studio starts and makes videos with the morph engine.
#    --require-models makes a missing model an error. An install failure is always an error.
# Every step is skipped when already done, so a second run takes seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BASE_DIR=""
SKIP_MODELS=0
DEV=0
USE_VENV=1
SKIP_PYTHON=0
REQUIRE_MODELS=0
ONLY=()
TORCH_VERSION=2.15.0
TORCHVISION_VERSION=0.29.2

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
  case "$1" in
    --base-dir) BASE_DIR=${2:?--base-dir needs a folder}; shift 2 ;;
    --base-dir=*) BASE_DIR=${1#*=}; shift ;;
    --skip-models) SKIP_MODELS=1; shift ;;
    --only) ONLY+=("--only" "${2:?--only needs framepack, post, analysis, wan or wan22}"); shift 2 ;;
    --dev) DEV=1; shift ;;
    --no-venv) USE_VENV=0; shift ;;
    --skip-python) SKIP_PYTHON=1; shift ;;
    --require-models) REQUIRE_MODELS=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

# Bad arguments fail before anything is installed (a typo must not reinstall the frontend).
if [ "$SKIP_MODELS" = 0 ] && [ -z "$BASE_DIR" ]; then
  echo "setup.sh: --base-dir DIR is required unless --skip-models is given" >&2
  exit 2
fi

log() { printf '\n[setup] %s\n' "$*"; }

is_colab() {
  { [ -n "${COLAB_RELEASE_TAG:-}" ] || [ -d /content ]; } && python3 -c 'import google.colab' 2>/dev/null
}

# --- Python environment ----------------------------------------------------------------------
# Colab and the Docker image install into their own interpreter; elsewhere a .venv keeps the
# studio's pins away from the system Python.
if is_colab; then USE_VENV=0; fi
if [ "$USE_VENV" = 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "${PYTHON:-python3}" -m venv .venv
  fi
  PY="$ROOT/.venv/bin/python"
else
  PY=${PYTHON:-$(command -v python3)}
fi

pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# Prints the PyTorch wheel index for this machine's driver ("" = the PyPI build).
torch_index_url() {
  local cuda
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\.\([0-9]*\).*/\1\2/p' | head -n1)
  [ -n "$cuda" ] || return 0
  # The newest CUDA build the driver can run; PyTorch publishes these wheel channels.
  if [ "$cuda" -ge 128 ]; then echo "https://download.pytorch.org/whl/cu128"
  elif [ "$cuda" -ge 126 ]; then echo "https://download.pytorch.org/whl/cu126"
  elif [ "$cuda" -ge 124 ]; then echo "https://download.pytorch.org/whl/cu124"
  else echo "https://download.pytorch.org/whl/cu121"
  fi
}

install_torch() {
  local want="$TORCH_VERSION" have index
  if is_colab && "$PY" -c 'import torch' 2>/dev/null; then
    log "Colab: keeping Colab's own torch ($("$PY" -c 'import torch; print(torch.__version__)'))"
    return
  fi
  index=$(torch_index_url)
  have=$("$PY" -c 'import torch, torchvision; print(torch.__version__)' 2>/dev/null || true)
  if [ -n "$have" ] && [ "${have%%+*}" = "$want" ]; then
    if [ -z "$index" ] || "$PY" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)'; then
      log "torch $have already installed"
      return
    fi
  fi
  if [ -n "$index" ]; then
    log "installing torch $want for CUDA from $index"
    pip_install "torch==$want" "torchvision==$TORCHVISION_VERSION" --index-url "$index"
  else
    log "no NVIDIA GPU found: installing the CPU build torch $want from PyPI"
    pip_install "torch==$want" "torchvision==$TORCHVISION_VERSION"
  fi
}

# pip is slow even when nothing changes; a stamp of the requirement files' hashes skips it.
install_requirements() {
  local files=(requirements.txt) stamp sum
  [ "$DEV" = 1 ] && files+=(requirements-dev.txt)
  stamp="$("$PY" -c 'import sys; print(sys.prefix)')/.studio-requirements"
  sum=$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
    log "Python requirements unchanged since the last set-up"
    return
  fi
  log "installing ${files[*]}"
  local args=()
  for f in "${files[@]}"; do args+=(-r "$f"); done
  pip_install "${args[@]}"
  echo "$sum" >"$stamp"
}

if [ "$SKIP_PYTHON" = 0 ]; then
  pip_install --upgrade pip >/dev/null 2>&1 || true
  install_torch
  install_requirements
fi

# --- frontend -----------------------------------------------------------------------------------
if [ -f frontend/package-lock.json ]; then
  if command -v npm >/dev/null 2>&1; then
    if [ -d frontend/node_modules ] && [ frontend/node_modules/.package-lock.json -nt frontend/package-lock.json ]; then
      log "frontend packages already installed"
    else
      log "installing the frontend's pinned npm packages"
      npm ci --prefix frontend --no-audit --no-fund
    fi
  else
    log "npm not found: the pages load their pinned packages from the CDN instead"
  fi
fi

# --- test tools ---------------------------------------------------------------------------------
if [ "$DEV" = 1 ]; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  # A Korean font, so the page's screenshots show Korean text rather than empty boxes.
  [ -d /usr/share/fonts/truetype/nanum ] || missing+=(fonts-nanum)
  # Validates docker/docker-compose.yml when the compose v2 plugin is absent (no engine needed).
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    missing+=(docker-compose)
  fi
  # The container tests build and run docker/ with these (no Docker daemon needed; runc because
  # crun cannot drive a hybrid cgroup hierarchy).
  for tool in podman buildah debootstrap podman-compose runc; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      log "apt-get install ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
    else
      log "WARNING: ${missing[*]} missing and apt-get (as root) unavailable; the tests that need them will fail"
    fi
  fi
fi

# --- models -------------------------------------------------------------------------------------
if [ "$SKIP_MODELS" = 0 ]; then
  log "downloading models into $BASE_DIR"
  status=0
  "$PY" scripts/download_models.py --base-dir "$BASE_DIR" "${ONLY[@]}" || status=$?
  if [ "$status" = 1 ] && [ "$REQUIRE_MODELS" = 0 ]; then
    log "set-up finished; some models are missing (summary above). The studio starts and makes videos with the morph engine."
  elif [ "$status" != 0 ]; then
    exit "$status"
  fi
fi

log "done"
