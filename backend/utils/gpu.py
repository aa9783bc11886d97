"""What the /monitor page shows (per-GPU figures from NVML, host RAM and CPU from psutil), and what
this machine can run (`python -m backend.utils.gpu --profile`: GPU, compute capability, RAM, the
memory plan and the expected minutes per transition; the Colab notebook prints it).

NVML is reached through `NvmlApi`, the subset of the `pynvml` module (nvidia-ml-py) this file calls;
the real module satisfies it as it is, and tests pass a fake object with the same names. Every NVML
read is guarded on its own: a driver that cannot report power (many laptop and MIG GPUs) or a GPU
that fell off the bus costs that one figure (`None`, with the reason in `errors`), never the
snapshot, so the routes above this never answer 500.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

import psutil

MIB = 1024 * 1024


class NvmlApi(Protocol):
    """The pynvml names used here (the `pynvml` module itself implements them)."""

    NVMLError: type[Exception]
    NVML_TEMPERATURE_GPU: int

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlSystemGetDriverVersion(self) -> str: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # .used, .total in bytes
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...  # .gpu, .memory in %
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int: ...
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int: ...  # milliwatts
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int: ...  # milliwatts


def load_pynvml() -> NvmlApi | None:
    """The real NVML binding, or None when the package is missing (the library is checked later)."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml  # type: ignore[return-value]


@dataclass
class GpuReading:
    index: int
    name: str | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    utilization_percent: float | None = None
    memory_utilization_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    # "<field>: <reason>" for every figure NVML would not give; shown as "unavailable" by the page.
    errors: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    # Older pynvml builds return bytes for names and versions.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class SystemProbe:
    """Reads one snapshot of GPUs, RAM and CPU. Cheap enough to call once a second.

    NVML is initialised on the first read. If that fails (no driver, no GPU, library not found)
    the reason is kept and initialisation is retried only every `retry_s`, because a failing
    `nvmlInit` can take long enough to notice when it is tried every second.
    """

    def __init__(
        self,
        nvml: NvmlApi | None | str = "auto",
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml: NvmlApi | None = load_pynvml() if nvml == "auto" else nvml  # type: ignore[assignment]
        self._retry_s = retry_s
        self._clock = clock
        self._ready = False
        self._reason: str | None = None
        self._failed_at: float | None = None
        self._driver: str | None = None
        self._process = psutil.Process(os.getpid())
        # psutil's cpu_percent(None) measures since the previous call; the first call only primes it.
        psutil.cpu_percent(interval=None)
        psutil.cpu_percent(interval=None, percpu=True)

    # --- NVML -------------------------------------------------------------------------------
    def _ensure_nvml(self) -> bool:
        if self._ready:
            return True
        if self._nvml is None:
            self._reason = "NVML is not installed (nvidia-ml-py missing)"
            return False
        if self._failed_at is not None and self._clock() - self._failed_at < self._retry_s:
            return False
        try:
            self._nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ... and OSError
            self._reason = f"NVML unavailable: {_text(exc) or type(exc).__name__}"
            self._failed_at = self._clock()
            return False
        self._ready, self._reason, self._failed_at = True, None, None
        try:
            self._driver = _text(self._nvml.nvmlSystemGetDriverVersion())
        except Exception:
            self._driver = None
        return True

    def _read_device(self, index: int) -> GpuReading:
        nvml = self._nvml
        assert nvml is not None
        reading = GpuReading(index=index)
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            reading.errors.append(f"device: {_text(exc)}")
            return reading

        def read(name: str, call: Callable[[], Any]) -> Any:
            try:
                return call()
            except Exception as exc:
                reading.errors.append(f"{name}: {_text(exc) or type(exc).__name__}")
                return None

        name = read("name", lambda: nvml.nvmlDeviceGetName(handle))
        reading.name = _text(name) if name is not None else None
        memory = read("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        if memory is not None:
            reading.memory_used_mb = round(memory.used / MIB, 1)
            reading.memory_total_mb = round(memory.total / MIB, 1)
        rates = read("utilization", lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        if rates is not None:
            reading.utilization_percent = float(rates.gpu)
            reading.memory_utilization_percent = float(rates.memory)
        temp = read(
            "temperature", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        )
        reading.temperature_c = float(temp) if temp is not None else None
        power = read("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        reading.power_w = round(power / 1000.0, 1) if power is not None else None
        limit = read("power_limit", lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        reading.power_limit_w = round(limit / 1000.0, 1) if limit is not None else None
        return reading

    def read_gpus(self) -> dict[str, Any]:
        if not self._ensure_nvml():
            return {"available": False, "reason": self._reason, "driver": None, "devices": []}
        assert self._nvml is not None
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
        except Exception as exc:
            # The driver went away under us: start over (with the retry delay) next time.
            self._ready, self._failed_at = False, self._clock()
            self._reason = f"NVML unavailable: {_text(exc) or type(exc).__name__}"
            return {"available": False, "reason": self._reason, "driver": self._driver, "devices": []}
        if count == 0:
            return {"available": False, "reason": "no NVIDIA GPU found", "driver": self._driver, "devices": []}
        devices = [asdict(self._read_device(i)) for i in range(count)]
        return {"available": True, "reason": None, "driver": self._driver, "devices": devices}

    # --- host ---------------------------------------------------------------------------------
    def read_host(self) -> dict[str, Any]:
        memory: dict[str, Any]
        try:
            vm = psutil.virtual_memory()
            memory = {
                "total_mb": round(vm.total / MIB, 1),
                "used_mb": round((vm.total - vm.available) / MIB, 1),
                "available_mb": round(vm.available / MIB, 1),
                "percent": float(vm.percent),
            }
        except Exception as exc:
            memory = {"total_mb": None, "used_mb": None, "available_mb": None, "percent": None,
                      "error": str(exc)}
        cpu: dict[str, Any]
        try:
            cpu = {
                "percent": float(psutil.cpu_percent(interval=None)),
                "per_cpu": [float(v) for v in psutil.cpu_percent(interval=None, percpu=True)],
                "count": psutil.cpu_count() or 0,
            }
        except Exception as exc:
            cpu = {"percent": None, "per_cpu": [], "count": None, "error": str(exc)}
        try:
            process_rss = round(self._process.memory_info().rss / MIB, 1)
        except Exception:
            process_rss = None
        return {"memory": memory, "cpu": cpu, "process": {"rss_mb": process_rss}}

    def snapshot(self) -> dict[str, Any]:
        """One reading of everything; never raises for a failing sensor."""
        return {"time": time.time(), "gpu": self.read_gpus(), **self.read_host()}

    def close(self) -> None:
        if self._ready and self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._ready = False


# --- what this machine can run: capability, profile, expected minutes ---------------------------
# Dense fp16/bf16 tensor rates (datasheets) of GPUs people run the studio on, in TFLOP/s.
TENSOR_TFLOPS = {"T4": 65.0, "L4": 121.0, "A10G": 70.0, "A100": 312.0, "H100": 989.0, "H200": 989.0,
                 "RTX 3060": 51.0, "RTX 4060": 60.0}
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


def estimate_minutes(gpu: str, bucket: int, steps: int = DEFAULT_STEPS, sections: int = TRANSITION_SECTIONS,
                     fraction: float = ASSUMED_FRACTION) -> dict:
    """s/step and minutes per transition from FLOPs over the GPU's tensor rate: an estimate."""
    rate = TENSOR_TFLOPS[gpu] * 1e12 * fraction
    s_step = FLOPS_PER_STEP[bucket] / rate
    minutes = sections * (steps + DECODE_STEPS[bucket]) * s_step / 60
    return {"gpu": gpu, "bucket": bucket, "s_per_step": round(s_step, 2), "minutes_per_transition": round(minutes, 1),
            "assumed_fraction_of_peak": fraction, "peak_tflops": TENSOR_TFLOPS[gpu], "estimate": True}


def detect_machine() -> dict:
    """GPU name, VRAM, compute capability (torch, else nvidia-smi) and RAM of this machine."""
    out: dict = {"gpu": None, "vram_gib": 0.0, "capability": None, "ram_gib": psutil.virtual_memory().total / 1024**3}
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            out.update(gpu=p.name, vram_gib=p.total_memory / 1024**3, capability=[p.major, p.minor])
            return out
    except ImportError:
        pass
    import subprocess

    try:
        line = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        name, mib, cap = (x.strip() for x in line.split(","))
        out.update(gpu=name, vram_gib=float(mib) / 1024, capability=[int(c) for c in cap.split(".")])
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        pass
    return out


def _family(name: str | None) -> str | None:
    name = (name or "").upper()
    for key in TENSOR_TFLOPS:
        if key.upper() in name:
            return key
    return None


def machine_profile(machine: dict | None = None) -> dict:
    """The memory plan this machine gets, the settings to export and what a transition costs."""
    from backend.pipeline.framepack.residency import default_bucket, plan_residency

    m = machine or detect_machine()
    if not m["gpu"]:
        return {"machine": m, "plan": None, "env": {}, "message": "no NVIDIA GPU: only the morph preview engine runs"}
    family = _family(m["gpu"])
    cap = tuple(m["capability"] or (0, 0))
    t4_like = cap < (8, 0)
    bucket = default_bucket(m["vram_gib"], cap)
    plan = plan_residency(m["vram_gib"], m["ram_gib"], cap, 640)
    env = {"STUDIO_PLAN_BUCKET": "640"}
    result = {"machine": m, "profile": "colab-t4" if t4_like and m["vram_gib"] < 16 else "auto",
              "suggested_resolution": bucket, "plan": plan.describe(), "env": env}
    if family:
        result["estimates"] = [estimate_minutes(family, b) for b in (480, 640)]
    return result


def _main(argv: list[str] | None = None) -> int:
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
    print(f"GPU: {m['gpu'] or '-'}, VRAM {m['vram_gib']:.1f} GiB, compute capability {m['capability']}, "
          f"RAM {m['ram_gib']:.1f} GiB")
    plan = info.get("plan")
    if not plan:
        print(info["message"])
        return 0
    print(f"메모리 계획 / memory plan: {plan['mode']}, {plan['dtype']}, weights {plan['weights']}; blocks "
          f"GPU {plan['blocks_gpu']} / RAM {plan['blocks_ram']} / disk {plan['blocks_disk']}")
    for note in plan["quality"]:
        print(f"  품질 / quality: {note}")
    for e in info.get("estimates", []):
        print(f"  예상 / estimate, {e['bucket']} bucket: ~{e['s_per_step']} s/step, "
              f"~{e['minutes_per_transition']} min per 2.4 s transition ({int(e['assumed_fraction_of_peak'] * 100)}% "
              f"of {e['peak_tflops']:.0f} TFLOP/s assumed)")
    print(f"  권장 해상도 / suggested resolution: {info['suggested_resolution']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
