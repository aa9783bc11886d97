"""What the /monitor page shows (per-GPU figures from NVML, host RAM and CPU from psutil), and what
the machine's facts the memory plan starts from (`detect_machine`: GPU, VRAM, compute capability,
RAM; `backend.pipeline.framepack.machine` turns them into a plan and estimates).

NVML is reached through `NvmlApi`, the subset of the `pynvml` module (nvidia-ml-py) this file calls;
the real module satisfies it as it is, and tests pass a fake object with the same names. Every NVML
read is guarded on its own: a driver that cannot report power (many laptop and MIG GPUs) or a GPU
that fell off the bus costs that one figure (`None`, with the reason in `errors`), never the
snapshot, so the routes above this never answer 500.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

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
    return pynvml


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
        temp = read("temperature", lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
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
            memory = {"total_mb": None, "used_mb": None, "available_mb": None, "percent": None, "error": str(exc)}
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
        line = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            .stdout.strip()
            .splitlines()[0]
        )
        name, mib, cap = (x.strip() for x in line.split(","))
        out.update(gpu=name, vram_gib=float(mib) / 1024, capability=[int(c) for c in cap.split(".")])
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        pass
    return out
