#!/usr/bin/env bash
# One call on the GPU machine after a restructuring: the CUDA tests of the FramePack engine, then the
# end-to-end transition against the plain diffusers pipeline (issue 28's baseline, same command),
# then the Wan engine's benchmark when it exists. Each part's log and JSON go to OUT as they finish.
# Usage (device): bash benchmarks/device_round.sh OUT [tests] [framepack] [wan]
# The wheels the device lacks (diffusers, pydantic, pydantic-settings and their small dependencies)
# travel in .whl/ (carried): they are installed into /tmp/site, outside the image.
set -u
out=$1; shift; mkdir -p "$out"
parts=${*:-tests framepack wan}
export PYTHONUNBUFFERED=1 STUDIO_MODELS_DIR=/tmp/studio-bench-models
if [ -d .whl ] && [ ! -d /tmp/site/ftfy ]; then
  python3 -m pip install -q --no-deps --target /tmp/site .whl/*.whl >"$out/pip.log" 2>&1
fi
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
  nproc; free -g | head -2; } >"$out/machine.txt" 2>&1
cat "$out/machine.txt"
for part in $parts; do
  began=$SECONDS
  case $part in
    tests)
      timeout 300 python3 -m pytest tests/pipeline/test_framepack_memory_modes.py \
        tests/pipeline/test_framepack_block_streaming.py tests/pipeline/test_framepack_generator_loop.py \
        tests/pipeline/test_framepack_dtype.py -q -p no:cacheprovider --tb=short -rs -o addopts="" \
        >"$out/tests.log" 2>&1
      echo "tests rc=$? in $((SECONDS - began)) s"; tail -4 "$out/tests.log" ;;
    framepack)
      timeout 420 python3 benchmarks/framepack_gpu.py --mode resident --reference --size 640 --sections 2 \
        --steps 25 --out "$out/framepack_resident_640.json" >"$out/framepack.log" 2>&1
      echo "framepack rc=$? in $((SECONDS - began)) s"; grep -E "ratio|s/step|end to end|Error" "$out/framepack.log" | tail -12 ;;
    wan)
      if [ -f benchmarks/wan_gpu.py ]; then
        timeout 540 python3 benchmarks/wan_gpu.py --size 480 --steps 3 --out "$out/wan_480.json" >"$out/wan.log" 2>&1
        echo "wan rc=$? in $((SECONDS - began)) s"; tail -15 "$out/wan.log"
      fi ;;
  esac
done
