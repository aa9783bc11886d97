"""The /monitor page's worker cards for a Ray pool, in Debian's headless Chromium against the real
app on a real uvicorn server on loopback.

No Ray cluster with GPUs can exist here, so the server's monitor hub gets a probe (the real
`SystemProbe`, which the hub also uses in production) whose snapshot carries a `cluster` as a
pool's studio reports it. Each worker's `gpu` is read through `SystemProbe` itself over a fake NVML,
so it is exactly the dict a real worker sends. The probe's cluster can be changed while the page is
open: later samples reach the page through WS /ws/monitor.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest
import uvicorn

from backend.utils.config import Settings
from backend.utils.gpu import SystemProbe
from backend.web.routes.monitor import MonitorHub
from tests.helpers.browser import REQUIREMENTS, offline_page, reset_storage, screenshot

pytestmark = REQUIREMENTS

MIB = 2**20
JOB = "3f9c2ab7e1d04c5b8a6f0e2d4c1b9a87"


class _Memory:
    def __init__(self, used_mb: float, total_mb: float) -> None:
        self.used, self.total = used_mb * MIB, total_mb * MIB


class _Rates:
    def __init__(self, gpu: float) -> None:
        self.gpu, self.memory = gpu, gpu / 2


class OneGpuNvml:
    """One GPU with fixed figures: what NVML on a worker's host answers."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, name: str, used_mb: float, total_mb: float, util: float) -> None:
        self.name, self.used_mb, self.total_mb, self.util = name, used_mb, total_mb, util

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return "570.86.15"

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetName(self, handle):
        return self.name

    def nvmlDeviceGetMemoryInfo(self, handle):
        return _Memory(self.used_mb, self.total_mb)

    def nvmlDeviceGetUtilizationRates(self, handle):
        return _Rates(self.util)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        return 55

    def nvmlDeviceGetPowerUsage(self, handle):
        return 300_000

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return 700_000


def worker_gpu(used_mb: float, util: float) -> dict[str, Any]:
    return SystemProbe(nvml=OneGpuNvml("NVIDIA H200", used_mb, 143771.0, util)).read_gpus()


def ray_cluster() -> dict[str, Any]:
    return {
        "mode": "ray",
        "address": "10.0.0.5:6379",
        "error": None,
        "workers": [
            {
                "name": "worker-1",
                "node": "10.0.0.6",
                "pid": 4242,
                "state": "running",
                "running": {"job_id": JOB, "transition": 2, "take": 1, "engine": "framepack"},
                "gpu": worker_gpu(used_mb=30720.0, util=87.0),
                "done": 3,
                "error": None,
            },
            {
                "name": "worker-2",
                "node": "10.0.0.7",
                "pid": 5151,
                "state": "idle",
                "running": None,
                "gpu": worker_gpu(used_mb=512.0, util=0.0),
                "done": 1,
                "error": None,
            },
        ],
    }


class ClusterProbe(SystemProbe):
    """This host's real RAM and CPU, no GPU of its own (a pool's head), plus `cluster`. `cluster =
    None` leaves the key out, as a server from before the pool answers."""

    def __init__(self) -> None:
        super().__init__(nvml=None)
        self._lock = threading.Lock()
        self._cluster: dict[str, Any] | None = {"mode": "embedded", "address": None, "error": None, "workers": []}

    def set_cluster(self, cluster: dict[str, Any] | None) -> None:
        with self._lock:
            self._cluster = copy.deepcopy(cluster)

    def snapshot(self) -> dict[str, Any]:
        sample = super().snapshot()
        with self._lock:
            if self._cluster is not None:
                sample["cluster"] = copy.deepcopy(self._cluster)
        return sample


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    from backend.app import create_app

    tmp = tmp_path_factory.mktemp("monitor-workers")
    settings = Settings(
        _env_file=None,
        data_dir=tmp / "data",
        models_dir=tmp / "models",
        device="cpu",
        host="127.0.0.1",
        default_engine="morph",
        translate_service_url="127.0.0.1:9",
    )
    app = create_app(settings)
    probe = ClusterProbe()
    app.state.monitor_hub = MonitorHub(probe, interval_s=0.25, history_s=5.0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", probe
    server.should_exit = True
    thread.join(15)


def open_monitor(browser, url: str, lang: str = "en"):
    page = offline_page(browser, url)
    reset_storage(page, url, lang)
    page.goto(url + "/monitor")
    page.wait_for_selector("[data-testid=ram-used]")
    return page


def card(page, name: str) -> dict[str, str]:
    """The texts of one worker card, by part."""
    return page.eval_on_selector(
        f"[data-testid=worker-card][data-worker={name}]",
        """el => Object.fromEntries(['worker-name', 'worker-node', 'worker-state', 'worker-running', 'gpu-vram',
             'gpu-util', 'worker-done'].map(id => [id, (el.querySelector(`[data-testid=${id}]`) || {}).textContent || '']
             ).concat([['vram-sub', ((el.querySelector('[data-testid=gpu-vram]') || {}).nextElementSibling || {}).textContent || ''],
                       ['state', el.dataset.state], ['gpus', String(el.querySelectorAll('[data-testid=worker-gpu]').length)],
                       ['text', el.textContent]]))""",
    )


def test_a_pool_shows_a_card_per_worker_in_both_languages(browser, studio):
    url, probe = studio
    probe.set_cluster(ray_cluster())
    page = open_monitor(browser, url, "en")
    page.wait_for_selector("[data-testid=worker-card][data-worker=worker-2]")

    assert page.inner_text("[data-testid=workers] h2").startswith("Workers (2)")
    assert "10.0.0.5:6379" in page.inner_text("[data-testid=cluster-address]")
    names = page.eval_on_selector_all("[data-testid=worker-card]", "els => els.map(e => e.dataset.worker)")
    assert names == ["worker-1", "worker-2"]

    one = card(page, "worker-1")
    assert one["worker-name"] == "worker-1" and one["worker-node"] == "10.0.0.6 · pid 4242"
    assert one["state"] == "running" and one["worker-state"] == "Running"
    # The pool numbers transitions from 1, as the storyboard does.
    assert one["worker-running"].split() == ["Job", "3f9c2ab7…", "transition", "2,", "take", "1", "·", "framepack"]
    assert one["gpus"] == "1" and "NVIDIA H200" in one["text"]
    assert one["gpu-vram"] == "30.0 GiB" and one["vram-sub"] == "/ 140.4 GiB" and one["gpu-util"] == "87%"
    assert one["worker-done"] == "3 done"

    two = card(page, "worker-2")
    assert two["worker-node"] == "10.0.0.7 · pid 5151"
    assert two["state"] == "idle" and two["worker-state"] == "Idle"
    assert two["worker-running"] == "No transition running"
    assert two["gpu-vram"] == "512 MiB" and two["vram-sub"] == "/ 140.4 GiB" and two["gpu-util"] == "0%"
    assert two["worker-done"] == "1 done"

    # The head has no GPU of its own: said calmly, not as the amber "No GPU available" warning.
    assert "no GPU of its own" in page.inner_text("[data-testid=no-gpu]")
    assert page.query_selector("[data-testid=gpu-card]") is None
    assert page.query_selector("[data-testid=worker-error]") is None
    screenshot(page, "monitor-workers-en.png")

    page.click("[data-testid=lang-toggle]")
    page.wait_for_function("() => document.documentElement.lang === 'ko'")
    assert page.inner_text("[data-testid=workers] h2").startswith("워커 (2)")
    one, two = card(page, "worker-1"), card(page, "worker-2")
    assert one["worker-state"] == "실행 중" and two["worker-state"] == "대기 중"
    assert one["worker-running"].split() == ["작업", "3f9c2ab7…", "전환", "2,", "테이크", "1", "·", "framepack"]
    assert two["worker-running"] == "실행 중인 전환 없음"
    assert one["worker-done"] == "완료 3건" and one["gpu-vram"] == "30.0 GiB"
    assert "사용률" in one["text"] and "VRAM" in one["text"]
    screenshot(page, "monitor-workers-ko.png")

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "monitor-workers-phone.png")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert page.js_errors == []
    page.close()


def test_worker_cards_follow_the_live_samples(browser, studio):
    url, probe = studio
    probe.set_cluster(ray_cluster())
    page = open_monitor(browser, url, "en")
    page.wait_for_selector("[data-testid=worker-card][data-worker=worker-1][data-state=running]")

    # worker-1's process died: Ray restarts it and its transition runs again on worker-2.
    cluster = ray_cluster()
    lost, other = cluster["workers"]
    lost.update(state="lost", running=None, pid=None, error="worker process died (SIGKILL); restarting")
    lost["gpu"] = {"available": False, "reason": "worker unreachable", "driver": None, "devices": []}
    other.update(state="running", running={"job_id": JOB, "transition": 2, "take": 1, "engine": "framepack"})
    probe.set_cluster(cluster)
    page.wait_for_selector("[data-testid=worker-card][data-worker=worker-1][data-state=lost]", timeout=10_000)

    one, two = card(page, "worker-1"), card(page, "worker-2")
    assert one["worker-state"] == "Lost" and one["worker-node"] == "10.0.0.6"
    assert page.inner_text("[data-worker=worker-1] [data-testid=worker-error]") == (
        "worker process died (SIGKILL); restarting"
    )
    assert page.inner_text("[data-worker=worker-1] [data-testid=worker-no-gpu]") == (
        "No GPU (CPU worker) — worker unreachable"
    )
    assert two["worker-state"] == "Running" and "transition 2, take 1" in two["worker-running"]

    # Post-processing runs on a worker too: a task of the job with no transition.
    cluster["workers"][1]["running"] = {"job_id": JOB, "transition": None, "take": None, "engine": "framepack"}
    probe.set_cluster(cluster)
    page.wait_for_function(
        "() => document.querySelector('[data-worker=worker-2] [data-testid=worker-running]').textContent"
        ".includes('post-processing')",
        timeout=10_000,
    )
    assert card(page, "worker-2")["worker-running"].split() == ["Job", "3f9c2ab7…", "post-processing", "·", "framepack"]

    # A pool that cannot reach its cluster says why, and that no worker is there.
    probe.set_cluster(
        {"mode": "ray", "address": "10.0.0.5:6379", "error": "cannot reach Ray at 10.0.0.5:6379", "workers": []}
    )
    page.wait_for_selector("[data-testid=no-workers]", timeout=10_000)
    assert page.inner_text("[data-testid=cluster-error]") == "cannot reach Ray at 10.0.0.5:6379"
    assert page.inner_text("[data-testid=workers] h2").startswith("Workers (0)")
    assert page.query_selector("[data-testid=worker-card]") is None
    assert page.js_errors == []
    page.close()


@pytest.mark.parametrize("cluster", ["embedded", "missing"])
def test_without_a_pool_the_page_has_no_worker_section(browser, studio, cluster):
    url, probe = studio
    probe.set_cluster(
        {"mode": "embedded", "address": None, "error": None, "workers": []} if cluster == "embedded" else None
    )
    page = open_monitor(browser, url, "en")
    # A few live samples in, so the socket's samples (not only the first snapshot) were drawn.
    page.wait_for_function("() => document.querySelectorAll('[data-testid=chart-system] canvas').length > 0")
    time.sleep(1.0)
    assert page.query_selector("[data-testid=workers]") is None
    assert page.query_selector("[data-testid=worker-card]") is None
    # As today: the host without a GPU gets the warning with NVML's reason.
    notice = page.inner_text("[data-testid=no-gpu]")
    assert "No GPU available" in notice and "NVML" in notice
    assert page.js_errors == []
    page.close()
