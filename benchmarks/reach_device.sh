#!/usr/bin/env bash
# The reach measurements on the GPU machine, in one command (see benchmarks/README.md, "Reach").
# Usage: bash benchmarks/reach_device.sh PART OUT_DIR   (PART: tests | resident | profiles | profiles640)
set -u
part=$1; out=$2; mkdir -p "$out"
export PYTHONUNBUFFERED=1 STUDIO_MODELS_DIR=/tmp/studio-bench-models
models=/tmp/fp_models_8b
# run LABEL ARGS...: one benchmark process (RSS peaks are per process), its log in OUT/LABEL.log
run() { local label=$1; shift; echo "== $label: $*"; python3 benchmarks/framepack_gpu.py "$@" --out "$out/$label.json" \
  >"$out/$label.log" 2>&1; echo "rc=$?"; grep -E "Error|error" "$out/$label.log" | tail -3; }
case $part in
  tests)
    python3 -m pytest ${TESTS:-tests/test_generator_memory.py tests/test_reach_streaming.py tests/test_reach_dtype.py} \
      -q -p no:cacheprovider --tb=short >"$out/tests.log" 2>&1; tail -3 "$out/tests.log" ;;
  resident)
    run resident_640_bf16 --mode resident --size 640 --sections 2 --steps 3 --fp16-error
    run resident_480_bf16 --mode resident --size 480 --sections 2 --steps 3
    run resident_640_fp16 --mode resident --size 640 --sections 2 --steps 3 --compute-dtype fp16 ;;
  profiles|profiles640)
    size=480; [ "$part" = profiles640 ] && size=640
    for p in ${PROFILES:-colab-t4 laptop-6gb}; do
      run "profile_${p}_${size}" --profile "$p" --size $size --sections 2 --steps 3 --full-text-encoder \
        --from-disk $models
    done ;;
esac
