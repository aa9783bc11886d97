#!/usr/bin/env bash
# The reach cells left open, on the GPU machine, in two calls (see benchmarks/README.md, "Reach").
# Usage: bash benchmarks/reach_finish.sh PART OUT_DIR
#   a: GPU tests + `python -m backend --profile` + reader-thread rates (while the models are saved),
#      then resident 480 and the profiles at 480 (gpu-8gb, gpu-12gb)
#   b: resident 640 and the profiles at 640 (gpu-8gb, gpu-12gb, laptop-6gb); with AB=1 also gpu-8gb
#      640 with one reader thread (the parallel reads' effect on the same machine; not run so far)
#   c: resident 480, then the cells measured before the allocator margin and the reader threads
#      (colab-t4 480, laptop-6gb 480), gpu-8gb 480 with 8 reader threads, colab-t4 640
# Every run's JSON and log go to /tmp/reach/; OUT_DIR gets them as one tarball after each run
# (a call cut off by its time limit still brings back what finished) and a summary table.
set -u
part=$1; out=$2; mkdir -p "$out"; logs=/tmp/reach/$part; mkdir -p "$logs"
export PYTHONUNBUFFERED=1 STUDIO_MODELS_DIR=/tmp/studio-bench-models
models=/tmp/fp_models_8b
pack() { tar -czf "$out/reach_$part.tar.gz" -C "$logs" . ; }
summary() { python3 benchmarks/reach_summary.py "$logs"/*.json | tee "$out/summary_$part.txt"; }
# run LABEL ARGS...: one benchmark process (RSS peaks are per process), bounded in time.
run() {
  local label=$1; shift; echo "== $label: $*"; local began=$SECONDS
  timeout 300 python3 benchmarks/framepack_gpu.py "$@" --out "$logs/$label.json" >"$logs/$label.log" 2>&1
  echo "rc=$? in $((SECONDS - began)) s"; grep -E "Error" "$logs/$label.log" | tail -3; pack
}
profile() { run "profile_$1_$2" --profile "$1" --size "$2" --sections 2 --steps 3 --full-text-encoder --from-disk $models; }
save_models() {
  [ -f $models/model_index.json ] && return 0
  local began=$SECONDS
  python3 benchmarks/framepack_gpu.py --save-to $models --full-text-encoder >"$logs/save.log" 2>&1
  echo "models saved (rc=$?) in $((SECONDS - began)) s"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
  nproc; free -g | head -2; df -h /tmp | tail -1; } >"$logs/machine.txt" 2>&1
cat "$logs/machine.txt"
case $part in
  a)
    python3 benchmarks/read_threads.py --blocks 12 --out "$logs/read_threads.json" 2>&1 | tee "$logs/read_threads.log"
    save_models & saver=$!
    python3 -m pytest tests/test_generator_memory.py tests/test_reach_streaming.py tests/test_reach_dtype.py \
      tests/test_reach_plan.py -q -p no:cacheprovider --tb=short -rs >"$logs/tests.log" 2>&1
    tail -4 "$logs/tests.log"
    { python3 -m backend --profile; python3 -m backend --profile --json; } >"$logs/cli.log" 2>&1
    head -8 "$logs/cli.log"; pack
    wait $saver
    run resident_480_bf16 --mode resident --size 480 --sections 2 --steps 3
    profile gpu-8gb 480
    profile gpu-12gb 480 ;;
  b)
    save_models
    run resident_640_bf16 --mode resident --size 640 --sections 2 --steps 3
    profile gpu-8gb 640
    profile gpu-12gb 640
    profile laptop-6gb 640
    [ "${AB:-0}" = 1 ] && STUDIO_READ_THREADS=1 run profile_gpu-8gb_640_1thread --profile gpu-8gb --size 640 --sections 2 --steps 3 \
      --full-text-encoder --from-disk $models ;;
  c)
    save_models
    run resident_480_bf16 --mode resident --size 480 --sections 2 --steps 3
    profile colab-t4 480
    profile laptop-6gb 480
    STUDIO_READ_THREADS=8 run profile_gpu-8gb_480_8threads --profile gpu-8gb --size 480 --sections 2 --steps 3 \
      --full-text-encoder --from-disk $models
    profile colab-t4 640 ;;
esac
summary; pack
