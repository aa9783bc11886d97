"""The monitor backend: NVML absent or failing degrades to "unavailable", never an error status.

NVML cannot exist on this machine (no GPU, no driver); `FakeNvml` implements the same names as the
pynvml module (`backend.utils.gpu.NvmlApi`), which the probe calls exactly as it calls the real one.
The real pynvml is also exercised: here its nvmlInit fails with "library not found".
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from backend.utils.gpu import SystemProbe, load_pynvml
from backend.web.routes import monitor as monitor_api
from backend.web.routes.monitor import MonitorHub


class FakeNvmlError(Exception):
    pass


class FakeNvml:
    """Two GPUs; `broken` names the reads that fail, as a driver without that sensor does."""

    NVMLError = FakeNvmlError
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, count: int = 2, broken: set[str] = frozenset(), init_error: str | None = None):
        self.count = count
        self.broken = set(broken)
        self.init_error = init_error
        self.init_calls = 0
        self.used = [1000 * 2**20, 2000 * 2**20]

    def _check(self, name: str) -> None:
        if name in self.broken:
            raise FakeNvmlError(f"{name} not supported")

    def nvmlInit(self):
        self.init_calls += 1
        if self.init_error:
            raise FakeNvmlError(self.init_error)

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return b"550.54.15"

    def nvmlDeviceGetCount(self):
        self._check("count")
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check(f"handle{index}")
        return index

    def nvmlDeviceGetName(self, handle):
        return f"Fake GPU {handle}"

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._check("memory")
        return SimpleNamespace(used=self.used[handle], total=24576 * 2**20, free=0)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return SimpleNamespace(gpu=40 + handle, memory=10)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 61

    def nvmlDeviceGetPowerUsage(self, handle):
        self._check("power")
        return 123_400

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        self._check("power_limit")
        return 350_000


def _assert_host_figures(snapshot: dict) -> None:
    memory, cpu = snapshot["memory"], snapshot["cpu"]
    assert memory["total_mb"] > 0 and 0 < memory["used_mb"] <= memory["total_mb"]
    assert 0 <= memory["percent"] <= 100
    assert cpu["count"] >= 1 and 0 <= cpu["percent"] <= 100
    assert len(cpu["per_cpu"]) == cpu["count"]
    assert snapshot["process"]["rss_mb"] > 10  # this Python process, torch-free


def test_no_nvml_package_says_so_and_still_reads_ram_and_cpu():
    snapshot = SystemProbe(nvml=None).snapshot()
    assert snapshot["gpu"] == {
        "available": False,
        "reason": "NVML is not installed (nvidia-ml-py missing)",
        "driver": None,
        "devices": [],
    }
    _assert_host_figures(snapshot)


def test_real_pynvml_without_a_driver_is_unavailable_not_an_error():
    nvml = load_pynvml()
    assert nvml is not None  # nvidia-ml-py is a requirement
    probe = SystemProbe(nvml=nvml)
    gpu = probe.read_gpus()
    if gpu["available"]:  # pragma: no cover - only on a machine with an NVIDIA driver
        pytest.skip("this machine has a working NVML")
    assert gpu["devices"] == []
    assert gpu["reason"].startswith("NVML unavailable: ")
    assert "Not Found" in gpu["reason"] or "not" in gpu["reason"].lower()


def test_failed_init_is_retried_only_after_the_retry_delay():
    now = [100.0]
    nvml = FakeNvml(init_error="Driver Not Loaded")
    probe = SystemProbe(nvml=nvml, retry_s=60, clock=lambda: now[0])
    for _ in range(5):
        assert probe.read_gpus()["reason"] == "NVML unavailable: Driver Not Loaded"
    assert nvml.init_calls == 1
    now[0] += 61
    nvml.init_error = None  # the driver came back
    gpu = probe.read_gpus()
    assert nvml.init_calls == 2
    assert gpu["available"] is True and gpu["driver"] == "550.54.15"


def test_two_gpus_read_in_full():
    gpu = SystemProbe(nvml=FakeNvml()).read_gpus()
    assert gpu["available"] is True and gpu["reason"] is None
    first, second = gpu["devices"]
    assert first == {
        "index": 0,
        "name": "Fake GPU 0",
        "memory_used_mb": 1000.0,
        "memory_total_mb": 24576.0,
        "utilization_percent": 40.0,
        "memory_utilization_percent": 10.0,
        "temperature_c": 61.0,
        "power_w": 123.4,
        "power_limit_w": 350.0,
        "errors": [],
    }
    assert second["memory_used_mb"] == 2000.0 and second["utilization_percent"] == 41.0


def test_a_failing_sensor_costs_only_that_figure():
    gpu = SystemProbe(nvml=FakeNvml(broken={"power", "memory"})).read_gpus()
    device = gpu["devices"][0]
    assert gpu["available"] is True
    assert device["power_w"] is None and device["memory_used_mb"] is None
    assert device["temperature_c"] == 61.0 and device["power_limit_w"] == 350.0
    assert device["errors"] == ["memory: memory not supported", "power: power not supported"]


def test_a_lost_device_or_driver_degrades():
    gpu = SystemProbe(nvml=FakeNvml(broken={"handle1"})).read_gpus()
    assert gpu["devices"][0]["name"] == "Fake GPU 0"
    assert gpu["devices"][1]["name"] is None
    assert gpu["devices"][1]["errors"] == ["device: handle1 not supported"]

    gpu = SystemProbe(nvml=FakeNvml(broken={"count"})).read_gpus()
    assert gpu["available"] is False and gpu["reason"] == "NVML unavailable: count not supported"

    gpu = SystemProbe(nvml=FakeNvml(count=0)).read_gpus()
    assert gpu == {"available": False, "reason": "no NVIDIA GPU found", "driver": "550.54.15", "devices": []}


def _app(hub: MonitorHub | None) -> FastAPI:
    app = FastAPI()
    app.include_router(monitor_api.router)
    if hub is not None:
        app.state.monitor_hub = hub
    return app


async def test_api_system_answers_200_with_nvml_absent_or_broken():
    for nvml in (None, FakeNvml(init_error="boom"), FakeNvml(broken={"count"})):
        app = _app(MonitorHub(SystemProbe(nvml=nvml), interval_s=1.0))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/api/system")
        assert response.status_code == 200
        body = response.json()
        assert body["gpu"]["available"] is False and body["gpu"]["reason"]
        assert body["interval_s"] == 1.0
        _assert_host_figures(body)


async def test_api_system_builds_its_hub_from_settings_when_none_is_set():
    app = _app(None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/api/system")
    assert response.status_code == 200
    assert isinstance(app.state.monitor_hub, MonitorHub)
    assert response.json()["interval_s"] == 1.0


def test_ws_monitor_sends_history_then_samples_and_stops_sampling_when_closed():
    nvml = FakeNvml()
    hub = MonitorHub(SystemProbe(nvml=nvml), interval_s=0.05, history_s=0.5)
    with TestClient(_app(hub)) as client:
        with client.websocket_connect("/ws/monitor") as ws:
            first = ws.receive_json()
            assert first["type"] == "history" and first["interval_s"] == 0.05
            samples = []
            for i in range(4):
                nvml.used[0] = (1000 + i) * 2**20
                message = ws.receive_json()
                assert message["type"] == "sample"
                samples.append(message["sample"])
            assert [s["time"] for s in samples] == sorted(s["time"] for s in samples)
            assert samples[0]["gpu"]["devices"][0]["name"] == "Fake GPU 0"
            _assert_host_figures(samples[-1])
        # A page opening later gets the kept history at once (bounded to history_s/interval_s).
        with client.websocket_connect("/ws/monitor") as ws:
            history = ws.receive_json()
            assert history["type"] == "history"
            assert 4 <= len(history["samples"]) <= 10
    assert hub._task is None and not hub._subscribers


async def test_a_slow_page_is_dropped_without_holding_up_the_others():
    hub = MonitorHub(SystemProbe(nvml=None), interval_s=0.01, history_s=1)
    slow = hub.subscribe()
    fast = hub.subscribe()
    received = 0
    while received < 20:
        sample = await asyncio.wait_for(fast.get(), timeout=5)
        assert sample is not None
        received += 1
    # The slow queue was never read: it was cut off with the "too slow" marker.
    assert slow not in hub._subscribers
    items = []
    while not slow.empty():
        items.append(slow.get_nowait())
    assert items[-1] is None
    await hub.unsubscribe(fast)
    assert hub._task is None
