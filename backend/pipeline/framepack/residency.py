"""The memory plan as a pure function: which transformer blocks sit on the GPU, in RAM, on disk.

`plan_residency(vram, ram, capability, bucket)` decides, before anything is read:

- the compute dtype: bf16 where the GPU has it (compute capability >= 8.0), else fp16 with an
  fp32 residual stream (`compute_dtype.py`), or fp32 when asked;
- the weight format: 2-byte (bit-exact) when the blocks that do not fit the GPU fit the host-RAM
  budget in 2 bytes, else 8-bit (int8/e4m3 with row scales; not bit-exact);
- how many of the 60 blocks stay on the GPU: as many as fit beside the fixed parts (the rest of
  the transformer, the VAE, CUDA's own workspace) and the activations of the bucket's forward and
  tiled decode; the rest stream, one block ahead of compute;
- of the streamed blocks, how many stay in pinned host RAM and how many are read from their files
  on disk each step (when host RAM cannot hold them within its budget).

resident (all blocks on the GPU, 2-byte), fp8 (all on the GPU, 8-bit) and offload (none on the
GPU) are the plan's corner cases; anything between is "partial".

Sizes are the released FramePack transformer's (computed from its config; a test checks them
against a meta-device model); the workspace figures were measured on the GPU machine
(benchmarks/README.md, "Reach").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GIB = 1024**3

# Bytes of one block of HunyuanVideo-FramePack (hidden 3072, MLP ratio 4), in 2-byte weights and
# with its large linears in 8 bits (1 byte + a float32 scale per output row; the rest 2 bytes).
DUAL_BLOCK_BYTES = {"2byte": 679_662_592, "8bit": 340_292_608}
SINGLE_BLOCK_BYTES = {"2byte": 283_183_616, "8bit": 141_761_024}
DUAL_BLOCKS, SINGLE_BLOCKS = 20, 40
# Everything of the transformer that is not a block (embedders, token refiner, output head).
REST_BYTES = {"2byte": 828_033_152, "8bit": 429_201_792}
VAE_BYTES = 492_957_606
# CUDA context leftovers inside the allocator, cuBLAS workspaces, the timestep/guidance embeds,
# encoder outputs kept for the job, allocator rounding.
GPU_SLACK_GIB = 0.45
# Peak activations of one transformer forward, per megapixel of the bucket (window 9, ~1k
# text+image tokens), plus what does not scale (the dequantised weight of the largest layer).
WORKSPACE_GIB_PER_MPIX = 7.3
WORKSPACE_FLOOR_GIB = 0.6
# The tiled VAE decode's peak, which its fixed tile size keeps about the same for every bucket up
# to 640: measured 5.6 GiB needed at 480 beside 2.8 GiB of weights (an OOM under a 5.75 GiB cap).
DECODE_WORKSPACE_GIB = 3.0
# fp16 keeps the residual stream in fp32: the stream tensors and their sums double.
FP16_WORKSPACE_FACTOR = 1.15
# Disk-tier blocks read ahead of the GPU (STUDIO_READ_AHEAD_BLOCKS' default).
READ_AHEAD_BLOCKS = 2
# What the allocator may reserve: the card less what the driver and the display keep.
VRAM_RESERVE_GIB = 0.5
# Under a VRAM limit (STUDIO_VRAM_LIMIT_GIB), the allocator is capped this much below it. Its cap
# is checked before an expandable segment is grown, and growth is mapped in whole pages (2 MiB
# for small tensors, 20 MiB for large ones), so what it reserves may pass its cap by a page:
# measured 2-4 MiB over under 7.75 and 11.75 GiB caps. Three large pages of room keep it under.
ALLOCATOR_MARGIN_GIB = 64 / 1024

# Host RAM of the process besides the streamed blocks: Python + torch + CUDA libraries, the CUDA
# context's host side, CLIP and SigLIP between jobs (1 GB), the compile cache, a job's frames.
HOST_BASE_GIB = 4.6
# Share of the machine's RAM the studio process plans to use; the rest is the OS, the page cache
# that disk-streamed weights go through, and whatever else runs (a Colab kernel, a browser).
HOST_SHARE = 0.62


@dataclass(frozen=True)
class Profile:
    """A machine the studio promises to run on: VRAM and RAM in GiB, CUDA compute capability."""

    name: str
    vram_gib: float
    ram_gib: float
    capability: tuple[int, int]
    bucket: int  # the default bucket edge on this machine
    label: str


GB = 1e9 / GIB  # decimal GB in GiB
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("colab-t4", 15.0, 12.7 * GB, (7, 5), 480, "free Colab T4 (15 GB VRAM, 12.7 GB RAM)"),
        Profile("laptop-6gb", 6.0, 16.0, (8, 6), 480, "6 GB laptop GPU, 16 GB RAM"),
        Profile("gpu-8gb", 8.0, 16.0, (8, 6), 480, "8 GB GPU (3060 Ti, 4060), 16 GB RAM"),
        Profile("gpu-12gb", 12.0, 32.0, (8, 6), 480, "12 GB GPU (3060 12 GB), 32 GB RAM"),
        Profile("l4", 22.0, 51.0, (8, 9), 640, "Colab L4 (22.5 GB VRAM, 53 GB RAM)"),
        Profile("a10g", 22.0, 30.0, (8, 6), 640, "A10G (24 GB VRAM), 32 GB RAM"),
        Profile("a100-40gb", 39.5, 80.0, (8, 0), 640, "A100 40 GB, 83 GB RAM"),
    )
}


# Below this much VRAM (or without bf16) a GPU computes a 640 step in tens of seconds (a T4: an
# estimated 20 s, 17 minutes per transition): the page starts at the 480 bucket there (8 minutes).
SMALL_GPU_VRAM_GIB = 16.0


def default_bucket(vram_gib: float | None, capability: tuple[int, int] | None, plan_bucket: int = 0) -> int:
    """The resolution the page starts at on this machine: 480 on a T4 and on GPUs under 16 GiB,
    640 elsewhere (and on the CPU, where only the morph preview is practical); never above the
    bucket the memory plan leaves room for (`plan_bucket`, STUDIO_PLAN_BUCKET, 0 = 640)."""
    small = vram_gib is not None and (vram_gib < SMALL_GPU_VRAM_GIB or tuple(capability or (0, 0)) < (8, 0))
    bucket = 480 if small else 640
    return min(bucket, plan_bucket) if plan_bucket else bucket


@dataclass(frozen=True)
class MemoryPlan:
    """Where the weights go and how the transformer computes; decided once, before reading.

    Deciding again after reading would see the RAM the weights now take and choose differently.
    """

    mode: str  # cpu / resident / fp8 / partial / offload
    offload_weights: str | None  # "bf16" (2-byte) / "fp8" (8-bit) weights of a streamed transformer
    text_on_disk: bool
    dtype: str = "bf16"  # compute dtype: bf16 / fp16 / fp32
    weights: str = "2byte"  # transformer block weights: 2byte (bf16/fp16, exact) or 8bit
    blocks_gpu: int = DUAL_BLOCKS + SINGLE_BLOCKS
    blocks_ram: int = 0
    blocks_disk: int = 0
    bucket: int = 640
    # Per block index (dual blocks first, then single), where it lives: "gpu" / "ram" / "disk".
    tiers: tuple[str, ...] = field(default=(), compare=False)
    vram_budget_gib: float = 0.0
    host_budget_gib: float = 0.0
    streamed_gib_per_step: float = 0.0  # bytes every forward copies host -> GPU
    disk_gib_per_step: float = 0.0  # of which read from disk
    notes: tuple[str, ...] = ()

    def describe(self) -> dict:
        """What /api/health shows."""
        out = asdict(self)
        out.pop("tiers")
        out["quality"] = quality_notes(self)
        return out


def quality_notes(plan: MemoryPlan) -> list[str]:
    """The plan's choices that change the pictures (shown in the UI and README)."""
    notes = []
    if plan.weights == "8bit":
        notes.append("8-bit weights (not bit-exact; about 1% output error)")
    if plan.dtype == "fp16":
        notes.append("fp16 compute with an fp32 residual stream (not bit-identical to bf16)")
    return notes


def choose_compute_dtype(requested: str, device: str, capability: tuple[int, int] | None) -> str:
    """bf16 where the GPU computes it natively (>= 8.0), else fp16; `requested` wins unless it
    asks for bf16 on a GPU without it, where bf16 kernels fail to build ("requires sm_80")."""
    if device != "cuda":
        return "fp32"
    has_bf16 = capability is not None and tuple(capability) >= (8, 0)
    if requested == "auto":
        return "bf16" if has_bf16 else "fp16"
    if requested == "bf16" and not has_bf16:
        return "fp16"
    return requested


def allocator_cap_gib(limit_gib: float) -> float:
    """The allocator cap (and the VRAM planned for) under a VRAM limit: its reserved memory stays
    within `limit_gib` although the allocator rounds its growth up past its own cap."""
    return max(0.0, limit_gib - ALLOCATOR_MARGIN_GIB)


def block_sizes(weights: str) -> list[int]:
    return [DUAL_BLOCK_BYTES[weights]] * DUAL_BLOCKS + [SINGLE_BLOCK_BYTES[weights]] * SINGLE_BLOCKS


def workspace_gib(bucket: int, dtype: str) -> float:
    """VRAM the job needs beside the weights: the larger of a forward's and the decode's peak."""
    mpix = bucket * bucket / 1e6
    ws = WORKSPACE_FLOOR_GIB + WORKSPACE_GIB_PER_MPIX * mpix
    ws *= FP16_WORKSPACE_FACTOR if dtype == "fp16" else 2.0 if dtype == "fp32" else 1.0
    return max(ws, DECODE_WORKSPACE_GIB * (mpix / 0.41 if mpix > 0.41 else 1.0))


def _fill(sizes: list[int], candidates: list[int], budget_bytes: float) -> list[int]:
    """Indices from `candidates` (largest first) whose sizes fit `budget_bytes` together."""
    chosen, used = [], 0
    for i in sorted(candidates, key=lambda i: (-sizes[i], i)):
        if used + sizes[i] <= budget_bytes:
            chosen.append(i)
            used += sizes[i]
    return sorted(chosen)


def host_budget_gib(ram_gib: float, ram_free_gib: float | None = None) -> float:
    budget = HOST_SHARE * ram_gib
    if ram_free_gib is not None:
        budget = min(budget, ram_free_gib - 1.0)
    return budget


def _tiers(sizes: list[int], gpu_budget: float, host_budget: float) -> tuple[list[str], float, float]:
    n = len(sizes)
    if sum(sizes) <= gpu_budget * GIB:
        on_gpu = set(range(n))
    else:
        # Streaming keeps two blocks in flight (the one computing, the next being copied).
        on_gpu = set(_fill(sizes, list(range(n)), gpu_budget * GIB - 2 * max(sizes)))
    rest = [i for i in range(n) if i not in on_gpu]
    in_ram = set(_fill(sizes, rest, max(0.0, host_budget) * GIB))
    if len(in_ram) < len(rest):
        # Disk blocks are read into `read_ahead` pinned buffers of the largest block's size.
        in_ram = set(_fill(sizes, rest, max(0.0, host_budget * GIB - READ_AHEAD_BLOCKS * max(sizes))))
    tiers = ["gpu" if i in on_gpu else "ram" if i in in_ram else "disk" for i in range(n)]
    streamed = sum(sizes[i] for i in rest) / GIB
    disk = sum(sizes[i] for i in range(n) if tiers[i] == "disk") / GIB
    return tiers, streamed, disk


def plan_residency(
    vram_gib: float,
    ram_gib: float,
    capability: tuple[int, int] | None,
    bucket: int = 640,
    *,
    device: str = "cuda",
    ram_free_gib: float | None = None,
    dtype_request: str = "auto",
    weights_request: str = "auto",
    mode_request: str = "auto",
) -> MemoryPlan:
    """The plan for a machine (VRAM and RAM in GiB, compute capability) and the largest bucket.

    `weights_request`: auto / bf16 (2-byte) / fp8 (8-bit); `mode_request`: auto, or resident / fp8
    / offload to force a corner of the plan (STUDIO_GPU_PROFILE).
    """
    if device != "cuda":
        return MemoryPlan("cpu", None, False, dtype="fp32", bucket=bucket, tiers=("gpu",) * 60)
    dtype = choose_compute_dtype(dtype_request, device, capability)
    vram_budget = vram_gib - VRAM_RESERVE_GIB
    host_budget = host_budget_gib(ram_gib, ram_free_gib)
    room_for_blocks_host = host_budget - HOST_BASE_GIB
    ws = workspace_gib(bucket, dtype)
    notes: list[str] = []

    def gpu_room(weights: str) -> float:
        return vram_budget - GPU_SLACK_GIB - ws - (REST_BYTES[weights] + VAE_BYTES) / GIB

    def layout(weights: str, gpu: float, host: float) -> tuple[list[str], float, float]:
        return _tiers(block_sizes(weights), gpu, host)

    if mode_request == "resident":
        weights, (tiers, streamed, disk) = "2byte", (["gpu"] * 60, 0.0, 0.0)
    elif mode_request == "fp8":
        weights, (tiers, streamed, disk) = "8bit", (["gpu"] * 60, 0.0, 0.0)
    else:
        gpu_share = 0.0 if mode_request == "offload" else None
        weights = None
        if weights_request in ("auto", "bf16"):
            tiers, streamed, disk = layout(
                "2byte", gpu_share if gpu_share is not None else gpu_room("2byte"), room_for_blocks_host
            )
            if "disk" not in tiers or weights_request == "bf16":
                weights = "2byte"
                if "disk" in tiers:  # asked for bf16 where RAM cannot hold it: all in RAM, swap risk
                    tiers = ["ram" if t == "disk" else t for t in tiers]
                    disk = 0.0
                    notes.append("bf16 weights requested beyond the host-RAM budget")
        if weights is None:
            weights = "8bit"
            tiers, streamed, disk = layout(
                "8bit", gpu_share if gpu_share is not None else gpu_room("8bit"), room_for_blocks_host
            )
    blocks_gpu, blocks_ram, blocks_disk = (tiers.count(t) for t in ("gpu", "ram", "disk"))
    if blocks_gpu == len(tiers):
        mode = "resident" if weights == "2byte" else "fp8"
    elif blocks_gpu == 0:
        mode = "offload"
    else:
        mode = "partial"
    if gpu_room(weights) < 0 and mode_request == "auto":
        notes.append(f"the {bucket} bucket's activations leave no VRAM for blocks; a smaller bucket is safer")
    # The 8B text encoder (16 GB) stays out of host RAM unless the GPU holds everything and RAM is
    # plentiful: then it streams from pinned RAM in fp8 mode or sits whole on the GPU in resident mode.
    text_on_disk = mode != "resident" and not (mode == "fp8" and room_for_blocks_host >= 16 + 8)
    return MemoryPlan(
        mode=mode,
        offload_weights=None if mode in ("resident", "fp8") else ("bf16" if weights == "2byte" else "fp8"),
        text_on_disk=text_on_disk,
        dtype=dtype,
        weights=weights,
        blocks_gpu=blocks_gpu,
        blocks_ram=blocks_ram,
        blocks_disk=blocks_disk,
        bucket=bucket,
        tiers=tuple(tiers),
        vram_budget_gib=round(vram_budget, 3),
        host_budget_gib=round(host_budget, 3),
        streamed_gib_per_step=round(streamed, 3),
        disk_gib_per_step=round(disk, 3),
        notes=tuple(notes),
    )


def fit_tiers(tiers, n_dual: int, n_single: int) -> list[str]:
    """The plan's 20 + 40 tiers mapped onto a model with other block counts (tiny test models)."""
    tiers = list(tiers)
    if len(tiers) == n_dual + n_single:
        return tiers
    if not tiers:
        return ["gpu"] * (n_dual + n_single)
    dual, single = tiers[:DUAL_BLOCKS], tiers[DUAL_BLOCKS:] or tiers[:DUAL_BLOCKS]

    def pick(part: list[str], n: int) -> list[str]:
        return [part[min(len(part) - 1, (2 * k + 1) * len(part) // (2 * n))] for k in range(n)] if n else []

    return pick(dual, n_dual) + pick(single, n_single)


def plan_for_profile(name: str, bucket: int | None = None, **kwargs) -> MemoryPlan:
    p = PROFILES[name]
    return plan_residency(p.vram_gib, p.ram_gib, p.capability, bucket or p.bucket, **kwargs)


__all__ = [
    "MemoryPlan",
    "PROFILES",
    "Profile",
    "plan_residency",
    "plan_for_profile",
    "fit_tiers",
    "choose_compute_dtype",
    "quality_notes",
    "workspace_gib",
    "block_sizes",
    "host_budget_gib",
    "allocator_cap_gib",
    "default_bucket",
]
