"""CPU tests of the memory plan as a pure function of VRAM, RAM, compute capability and bucket,
for each machine the studio promises to run on (free Colab T4, 6/8/12 GB GPUs)."""

from __future__ import annotations

import pytest

from backend.pipeline.framepack.residency import (
    DUAL_BLOCK_BYTES,
    GIB,
    HOST_BASE_GIB,
    PROFILES,
    REST_BYTES,
    SINGLE_BLOCK_BYTES,
    VAE_BYTES,
    allocator_cap_gib,
    block_sizes,
    choose_compute_dtype,
    default_bucket,
    fit_tiers,
    plan_for_profile,
    plan_residency,
    workspace_gib,
)

# The targets: peak RSS and VRAM reserved per profile.
TARGETS = {"colab-t4": (10.5, 14.5), "laptop-6gb": (12.0, 5.75), "gpu-8gb": (12.0, 7.75), "gpu-12gb": (20.0, 11.75)}


def _gpu_gib(plan) -> float:
    sizes = block_sizes(plan.weights)
    blocks = sum(s for s, t in zip(sizes, plan.tiers) if t == "gpu")
    streamed = max((s for s, t in zip(sizes, plan.tiers) if t != "gpu"), default=0)
    return (blocks + 2 * streamed + REST_BYTES[plan.weights] + VAE_BYTES) / GIB + workspace_gib(plan.bucket, plan.dtype)


def _host_gib(plan) -> float:
    sizes = block_sizes(plan.weights)
    ram = sum(s for s, t in zip(sizes, plan.tiers) if t == "ram")
    read_ahead = 2 * max((s for s, t in zip(sizes, plan.tiers) if t == "disk"), default=0)
    return HOST_BASE_GIB + (ram + read_ahead) / GIB


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("bucket", [480, 640])
def test_each_profile_plan_fits_its_targets(name, bucket):
    plan = plan_for_profile(name, bucket)
    rss_target, vram_target = TARGETS[name]
    assert len(plan.tiers) == 60 and plan.blocks_gpu + plan.blocks_ram + plan.blocks_disk == 60
    assert _gpu_gib(plan) <= vram_target, plan
    assert _host_gib(plan) <= rss_target, plan
    assert plan.text_on_disk  # 16 GB of text encoder never in host RAM on these machines
    assert plan.streamed_gib_per_step >= plan.disk_gib_per_step >= 0


def test_t4_plan_is_fp16_8bit_and_keeps_most_blocks_on_the_gpu():
    plan = plan_for_profile("colab-t4", 480)
    assert (plan.dtype, plan.weights, plan.mode) == ("fp16", "8bit", "partial")
    assert plan.blocks_gpu >= 40 and plan.blocks_disk == 0
    assert "fp16" in " ".join(plan.describe()["quality"]) and "8-bit" in " ".join(plan.describe()["quality"])
    # The 640 bucket needs more activation room: fewer blocks on the GPU, more streamed.
    big = plan_for_profile("colab-t4", 640)
    assert big.blocks_gpu < plan.blocks_gpu and big.streamed_gib_per_step > plan.streamed_gib_per_step


def test_6gb_laptop_streams_some_blocks_from_disk():
    """16 GB of RAM cannot hold the 12 GiB of 8-bit blocks next to the process: the rest is on disk."""
    plan = plan_for_profile("laptop-6gb", 480)
    assert plan.dtype == "bf16" and plan.weights == "8bit"
    assert plan.blocks_disk > 0 and plan.blocks_ram > 0
    more_ram = plan_residency(6, 64, (8, 6), 480)
    assert more_ram.blocks_disk == 0  # with RAM to spare, nothing goes to disk


def test_12gb_card_keeps_exact_weights_where_ram_allows():
    assert plan_residency(12, 128, (8, 6), 640).weights == "2byte"  # plenty of RAM: bit-exact bf16
    assert plan_residency(12, 16, (8, 6), 640).weights == "8bit"


def test_large_gpus_stay_resident_and_exact():
    plan = plan_residency(79, 200, (9, 0), 640)
    assert (plan.mode, plan.dtype, plan.weights, plan.blocks_gpu) == ("resident", "bf16", "2byte", 60)
    assert not plan.text_on_disk and plan.streamed_gib_per_step == 0


def test_more_vram_never_puts_fewer_blocks_on_the_gpu():
    counts = [plan_residency(v, 16, (8, 6), 640).blocks_gpu for v in (6, 8, 10, 12, 14, 16)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_free_ram_below_the_share_shrinks_the_ram_tier():
    roomy = plan_residency(8, 16, (8, 6), 640)
    busy = plan_residency(8, 16, (8, 6), 640, ram_free_gib=8)
    assert busy.blocks_disk > roomy.blocks_disk and busy.host_budget_gib == 7.0


@pytest.mark.parametrize(
    "capability,requested,device,expected",
    [
        ((7, 5), "auto", "cuda", "fp16"),  # T4, RTX 20xx: no bf16
        ((7, 0), "auto", "cuda", "fp16"),
        ((8, 0), "auto", "cuda", "bf16"),  # A100
        ((8, 6), "auto", "cuda", "bf16"),
        ((9, 0), "auto", "cuda", "bf16"),
        ((7, 5), "bf16", "cuda", "fp16"),  # bf16 kernels would fail to build there
        ((7, 5), "fp32", "cuda", "fp32"),
        ((9, 0), "fp16", "cuda", "fp16"),
        (None, "auto", "cpu", "fp32"),
    ],
)
def test_compute_dtype_by_capability(capability, requested, device, expected):
    assert choose_compute_dtype(requested, device, capability) == expected


def test_forced_modes_are_corners_of_the_plan():
    assert plan_residency(79, 200, (9, 0), mode_request="offload").blocks_gpu == 0
    fp8 = plan_residency(79, 200, (9, 0), mode_request="fp8")
    assert (fp8.mode, fp8.weights, fp8.blocks_gpu) == ("fp8", "8bit", 60)
    assert plan_residency(8, 16, (8, 6), mode_request="offload").blocks_disk > 0


@pytest.mark.slow
def test_block_sizes_are_the_real_architectures():
    """The plan's constants against the FramePack transformer built on the meta device."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import HunyuanVideoFramepackTransformer3DModel

    from tests.helpers.framepack_models import FULL_SPEC

    with init_empty_weights():
        t = HunyuanVideoFramepackTransformer3DModel(**FULL_SPEC["transformer"])

    def sizes(module):
        two = eight = 0
        for mod in module.modules():
            for name, p in mod._parameters.items():
                if p is None:
                    continue
                two += p.numel() * 2
                if type(mod) is torch.nn.Linear and name == "weight" and p.numel() >= 1 << 16:
                    eight += p.numel() + p.shape[0] * 4
                else:
                    eight += p.numel() * 2
        return {"2byte": two, "8bit": eight}

    assert sizes(t.transformer_blocks[0]) == DUAL_BLOCK_BYTES
    assert sizes(t.single_transformer_blocks[0]) == SINGLE_BLOCK_BYTES
    rest = [sizes(c) for n, c in t.named_children() if n not in ("transformer_blocks", "single_transformer_blocks")]
    assert {k: sum(r[k] for r in rest) for k in ("2byte", "8bit")} == REST_BYTES


def test_fit_tiers_maps_the_plan_onto_small_models():
    tiers = ["gpu"] * 20 + ["ram"] * 30 + ["disk"] * 10
    assert fit_tiers(tiers, 20, 40) == tiers
    assert fit_tiers(tiers, 2, 3) == ["gpu", "gpu", "ram", "ram", "disk"]
    assert fit_tiers(["ram"] * 60, 1, 1) == ["ram", "ram"]


def test_profiles_cover_the_issue_and_the_readme_table():
    assert {"colab-t4", "laptop-6gb", "gpu-8gb", "gpu-12gb", "l4", "a10g", "a100-40gb"} <= set(PROFILES)
    assert PROFILES["colab-t4"].bucket == 480


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("bucket", [480, 640])
def test_under_a_vram_limit_the_plan_fits_the_allocator_cap(name, bucket):
    """STUDIO_VRAM_LIMIT_GIB = the reserved target: the allocator is capped, and the plan made,
    a margin under it (the allocator rounds its growth up past its cap by a page of 2 or 20 MiB)."""
    target = TARGETS[name][1]
    cap = allocator_cap_gib(target)
    assert target - 0.1 <= cap <= target - 2 * 20 / 1024  # two large pages of room, little lost
    p = PROFILES[name]
    plan = plan_residency(cap, p.ram_gib, p.capability, bucket)
    assert _gpu_gib(plan) <= cap, plan


def test_the_page_s_default_bucket_is_480_on_a_t4_and_small_gpus():
    assert default_bucket(14.75, (7, 5)) == 480  # free Colab T4
    assert default_bucket(22.0, (7, 5)) == 480  # no bf16: a slow fp16 GPU whatever its memory
    assert default_bucket(7.6, (8, 6)) == 480 and default_bucket(11.7, (8, 6)) == 480
    assert default_bucket(22.0, (8, 9)) == 640 and default_bucket(79.2, (8, 0)) == 640
    assert default_bucket(None, None) == 640  # CPU: the morph preview
    assert default_bucket(79.2, (9, 0), plan_bucket=480) == 480  # never above the planned bucket
    assert default_bucket(14.75, (7, 5), plan_bucket=640) == 480
    for p in PROFILES.values():
        assert p.bucket == default_bucket(p.vram_gib, p.capability), p
