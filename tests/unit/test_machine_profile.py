"""The notebook's machine check: GPU/RAM → profile, plan and expected minutes (estimates)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from backend.pipeline.framepack.machine import estimate_minutes, machine_profile
from tests.helpers.server import ROOT

T4 = {"gpu": "Tesla T4", "vram_gib": 14.75, "capability": [7, 5], "ram_gib": 12.7e9 / 1024**3}


def test_a_free_colab_t4_gets_the_t4_profile_fp16_and_the_480_suggestion():
    info = machine_profile(T4)
    assert info["profile"] == "colab-t4" and info["suggested_resolution"] == 480
    plan = info["plan"]
    assert plan["dtype"] == "fp16" and plan["weights"] == "8bit" and plan["blocks_gpu"] > 0
    assert any("fp16" in q for q in plan["quality"]) and any("8-bit" in q for q in plan["quality"])
    by_bucket = {e["bucket"]: e for e in info["estimates"]}
    assert (
        by_bucket[480]["estimate"]
        and 5 < by_bucket[480]["minutes_per_transition"] < by_bucket[640]["minutes_per_transition"]
    )


def test_estimate_is_flops_over_the_assumed_rate():
    e = estimate_minutes("T4", 480, steps=20, sections=2, fraction=0.4)
    assert abs(e["s_per_step"] - 2.444e14 / (65e12 * 0.4)) < 0.01
    assert estimate_minutes("A100", 640)["minutes_per_transition"] < e["minutes_per_transition"]


def test_large_gpu_is_resident_and_no_gpu_says_so():
    a100 = machine_profile({"gpu": "NVIDIA A100-SXM4-80GB", "vram_gib": 79.2, "capability": [8, 0], "ram_gib": 83})
    assert a100["plan"]["mode"] == "resident" and a100["plan"]["dtype"] == "bf16"
    assert machine_profile({"gpu": None, "vram_gib": 0.0, "capability": None, "ram_gib": 8})["plan"] is None


@pytest.mark.slow
def test_cli_runs_on_this_machine():
    out = subprocess.run(
        [sys.executable, "-m", "backend", "--profile"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "RAM" in out.stdout
