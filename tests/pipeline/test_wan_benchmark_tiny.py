"""benchmarks/wan_gpu.py with `--tiny`: the full-size GPU benchmark's code paths (the meta-device
build, the plain pipeline, the studio's engine through `attach()`, the fast mode with a LightX2V-
style LoRA, a re-placement for `--plan`: the disk placement a 32 GiB machine gets, transformer
and UMT5 written to layer files) on the tiny Wan model on the CPU, so the script the lead runs on
the GPU keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wan_gpu_benchmark_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "wan.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/wan_gpu.py",
            "--tiny",
            "--plan",
            "--ram-gib",
            "32",
            "--steps",
            "3",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["models"] == "tiny" and result["frames"] == 9 and result["steps"] == 3
    assert result["params"]["transformer"] > 0 and result["lora_layers"] == 2 * 12
    for key in ("reference", "ours", "fast", "plan"):
        run = result[key]
        assert "error" not in run, run
        assert run["s_per_step"] > 0 and run["total_s"] > 0 and run["decode_s"] > 0 and run["peak_rss_gib"] > 0
    assert result["reference"]["steps"] == result["ours"]["steps"] == 3
    assert result["fast"]["steps"] == 4 and result["fast"]["fast"] is True
    assert result["ours"]["frames"] == result["plan"]["frames"] == 9
    assert 0 < result["plan"]["peak_rss_anon_gib"] <= result["plan"]["peak_rss_gib"]
    assert result["plan"]["placement"] == "group_offload_disk" and result["plan"]["stored_8bit"] == "int8"
    assert result["plan"]["error_vs_resident"]["identical"]  # the tiny linears are below the 8-bit size
    assert result["encoders"]["text_encode_s"] > 0 and result["encoders"]["image_encode_s"] > 0
    assert result["ratios"]["ours/reference s_per_step"] > 0 and result["ratios"]["plan/resident s_per_step"] > 0
    assert result["projected_clip_s"]["40_steps"] > result["projected_clip_s"]["20_steps"] > 0
    assert proc.stdout.rstrip().endswith(f"plan/resident total_s: {result['ratios']['plan/resident total_s']:.3f}")


def test_the_full_size_build_is_the_flf2v_14b_and_allocates_nothing_on_the_host():
    """The full spec built on the meta device: the published sizes (transformer 16.4 B with its
    image branch, UMT5-XXL encoder 5.68 B, CLIP ViT-H 0.63 B, VAE 0.127 B), every parameter on
    meta, the buffers real."""
    import psutil
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, UMT5Config, UMT5EncoderModel

    from benchmarks.wan_gpu import FULL, parameters_on_meta

    before = psutil.Process().memory_info().rss
    with parameters_on_meta():
        parts = {
            "transformer": WanTransformer3DModel(**FULL["transformer"]),
            "vae": AutoencoderKLWan(**FULL["vae"]),
            "text_encoder": UMT5EncoderModel(UMT5Config(**dict(FULL["umt5"], num_layers=FULL["umt5_full_layers"]))),
            "image_encoder": CLIPVisionModelWithProjection(
                CLIPVisionConfig(**dict(FULL["clip"], num_hidden_layers=FULL["clip_full_layers"]))
            ),
        }
    grown = psutil.Process().memory_info().rss - before
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}
    assert round(counts["transformer"] / 1e9, 1) == 16.4
    assert round(counts["text_encoder"] / 1e9, 2) == 5.68
    assert round(counts["image_encoder"] / 1e9, 2) == 0.63
    assert round(counts["vae"] / 1e9, 3) == 0.127
    assert all(p.is_meta for m in parts.values() for p in m.parameters())
    rope = parts["transformer"].rope.freqs_cos
    assert not rope.is_meta and bool(rope.abs().sum() > 0)
    assert parts["transformer"].condition_embedder.image_embedder.pos_embed.shape == (1, 514, 1280)
    assert grown < 2 * 1024**3  # 23 B parameters would be 46 GB in bf16
