"""What this machine can run: its memory plan, the settings to export and the minutes a transition
costs (`python -m backend --profile` prints it; the Colab notebook runs that).

The machine's own facts come from `backend.utils.gpu.detect_machine`; the plan is
`residency.plan_residency`, and the estimates are FLOPs over the GPU's tensor rate.
"""

from __future__ import annotations

from backend.pipeline.framepack.residency import default_bucket, plan_residency
from backend.utils.gpu import detect_machine

# Dense fp16/bf16 tensor rates (datasheets) of GPUs people run the studio on, in TFLOP/s.
TENSOR_TFLOPS = {
    "T4": 65.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A100": 312.0,
    "H100": 989.0,
    "H200": 989.0,
    "RTX 3060": 51.0,
    "RTX 4060": 60.0,
}
# Share of that rate a FramePack step reaches. 56% was measured on the H200 (bf16, resident,
# 640 bucket); smaller cards run power-capped and stream weights: 40% is an assumption.
ASSUMED_FRACTION = 0.40
# Transformer FLOPs per forward (FlopCounterMode on the full-size model, window 9, one pass:
# benchmarks/results/framepack_gpu_resident_{480,640}_h200.json).
FLOPS_PER_STEP = {480: 2.444e14, 640: 5.331e14}
# A 2.4 s transition: 2 sections (36 frames each at 30 fps); 20 steps at the default quality 70.
TRANSITION_SECTIONS, DEFAULT_STEPS = 2, 20
# A section's VAE decode and bookkeeping, in steps' worth of time: 2.78 s beside 0.446 s/step at
# 480, 4.84 s beside 0.962 s/step at 640 (H200, resident). Assumed to scale like the steps.
DECODE_STEPS = {480: 6.2, 640: 5.0}


def estimate_minutes(
    gpu: str,
    bucket: int,
    steps: int = DEFAULT_STEPS,
    sections: int = TRANSITION_SECTIONS,
    fraction: float = ASSUMED_FRACTION,
) -> dict:
    """s/step and minutes per transition from FLOPs over the GPU's tensor rate: an estimate."""
    rate = TENSOR_TFLOPS[gpu] * 1e12 * fraction
    s_step = FLOPS_PER_STEP[bucket] / rate
    minutes = sections * (steps + DECODE_STEPS[bucket]) * s_step / 60
    return {
        "gpu": gpu,
        "bucket": bucket,
        "s_per_step": round(s_step, 2),
        "minutes_per_transition": round(minutes, 1),
        "assumed_fraction_of_peak": fraction,
        "peak_tflops": TENSOR_TFLOPS[gpu],
        "estimate": True,
    }


def _family(name: str | None) -> str | None:
    name = (name or "").upper()
    for key in TENSOR_TFLOPS:
        if key.upper() in name:
            return key
    return None


def machine_profile(machine: dict | None = None) -> dict:
    """The memory plan this machine gets, the settings to export and what a transition costs."""
    m = machine or detect_machine()
    if not m["gpu"]:
        return {"machine": m, "plan": None, "env": {}, "message": "no NVIDIA GPU: only the morph preview engine runs"}
    family = _family(m["gpu"])
    cap = tuple(m["capability"] or (0, 0))
    t4_like = cap < (8, 0)
    bucket = default_bucket(m["vram_gib"], cap)
    plan = plan_residency(m["vram_gib"], m["ram_gib"], cap, 640)
    env = {"STUDIO_PLAN_BUCKET": "640"}
    result = {
        "machine": m,
        "profile": "colab-t4" if t4_like and m["vram_gib"] < 16 else "auto",
        "suggested_resolution": bucket,
        "plan": plan.describe(),
        "env": env,
    }
    if family:
        result["estimates"] = [estimate_minutes(family, b) for b in (480, 640)]
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(description="What this machine runs: GPU, RAM, memory plan, minutes per transition")
    ap.add_argument("--profile", action="store_true", help="print the memory plan and estimates")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    info = machine_profile()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = info["machine"]
    print(
        f"GPU: {m['gpu'] or '-'}, VRAM {m['vram_gib']:.1f} GiB, compute capability {m['capability']}, "
        f"RAM {m['ram_gib']:.1f} GiB"
    )
    plan = info.get("plan")
    if not plan:
        print(info["message"])
        return 0
    print(
        f"메모리 계획 / memory plan: {plan['mode']}, {plan['dtype']}, weights {plan['weights']}; blocks "
        f"GPU {plan['blocks_gpu']} / RAM {plan['blocks_ram']} / disk {plan['blocks_disk']}"
    )
    for note in plan["quality"]:
        print(f"  품질 / quality: {note}")
    for e in info.get("estimates", []):
        print(
            f"  예상 / estimate, {e['bucket']} bucket: ~{e['s_per_step']} s/step, "
            f"~{e['minutes_per_transition']} min per 2.4 s transition ({int(e['assumed_fraction_of_peak'] * 100)}% "
            f"of {e['peak_tflops']:.0f} TFLOP/s assumed)"
        )
    print(f"  권장 해상도 / suggested resolution: {info['suggested_resolution']}")
    return 0
