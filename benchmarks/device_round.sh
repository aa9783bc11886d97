#!/usr/bin/env bash
# One call on the GPU machine after a restructuring: the CUDA tests of the FramePack engine, then the
# end-to-end transition against the plain diffusers pipeline (issue 28's baseline, same command),
# then the Wan engine's benchmark when it exists. Each part's log and JSON go to OUT as they finish.
# Usage (device): bash benchmarks/device_round.sh OUT [tests] [framepack] [wan] [wan-disk32] [wan-disk32-16]
#                 [wan-fp8] [lora]
# The later parts are what the open issues still need measured; each fits one 10-minute call:
#   wan-disk32     Wan's disk placement (int8 layer files, UMT5 on disk) on a 24 GB GPU in a 32 GiB
#                  memory cgroup (issue 26's 1.3x target); wan-disk32-16 the same for a 16 GB GPU
#   wan-fp8        Wan resident with FP8 matmuls through the loader (issue 26's 0.80x)
#   lora           a user LoRA fused into compiled blocks: switch time and step (issue 27)
# The wheels the device lacks (diffusers, pydantic, pydantic-settings and their small dependencies;
# PyAV in .whl_av/) travel carried: they are installed into /tmp/site, outside the image.
set -u
out=$1; shift; mkdir -p "$out"
parts=${*:-tests framepack wan}
export PYTHONUNBUFFERED=1 STUDIO_MODELS_DIR=/tmp/studio-bench-models
if [ -d .whl ] && [ ! -d /tmp/site/ftfy ]; then
  wheels=(.whl/*.whl); [ -d .whl_av ] && wheels+=(.whl_av/*.whl)
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "${wheels[@]}" >"$out/pip.log" 2>&1
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
    wan-disk32|wan-disk32-16)
      vram=24; [ "$part" = wan-disk32-16 ] && vram=16
      timeout 560 bash benchmarks/with_memory_limit.sh 32 python3 benchmarks/wan_gpu.py --size 480 --plan \
        --vram-limit-gib "$vram" --ram-gib 32 --steps 2 --no-reference --no-fast --no-compile \
        --out "$out/wan_plan${vram}_disk32_int8.json" >"$out/$part.log" 2>&1
      echo "$part rc=$? in $((SECONDS - began)) s"; tail -15 "$out/$part.log" ;;
    wan-fp8)
      timeout 560 python3 benchmarks/wan_gpu.py --size 480 --steps 3 --no-first-job --no-eager --fp8 \
        --out "$out/wan_480_fp8.json" >"$out/wan-fp8.log" 2>&1
      echo "wan-fp8 rc=$? in $((SECONDS - began)) s"; tail -15 "$out/wan-fp8.log" ;;
    lora)
      timeout 560 python3 benchmarks/transition_e2e.py --steps 10 --lever-steps 10 --lora \
        --out "$out/transition_e2e_lora.json" >"$out/lora.log" 2>&1
      echo "lora rc=$? in $((SECONDS - began)) s"; tail -15 "$out/lora.log" ;;
  esac
done
