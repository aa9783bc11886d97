"""Where FramePack's weights live on a given machine: placement by the memory plan, pinned memory.

The plan (`residency.plan_residency`, decided from VRAM, RAM, compute capability and bucket before
anything is read, or forced by STUDIO_GPU_PROFILE) puts each transformer block on the GPU, in
pinned host RAM or on disk; its corners are the named modes:

- resident: bf16 weights on the GPU (26 GiB) with untiled VAE decode (+22 GiB peak at 640²).
- fp8: every block on the GPU with its linear weights in 8 bits and a scale per output channel,
  dequantised as each layer runs (`weight_storage.py`; int8 or float8), 12 GiB for the 13B model.
- partial: as many blocks on the GPU as fit beside the bucket's activations; the rest stream
  from pinned RAM (or from disk) one streamed block ahead of compute (`block_stream.py`).
- offload: no block on the GPU.
Outside resident mode the 8B text encoder lives on disk and visits the GPU layer by layer while a
job encodes its prompt (`disk_stream.py`); CLIP and SigLIP are on the GPU only while a job
encodes; the VAE decodes tiled.

Figures behind the plan's constants are in benchmarks/README.md ("FramePack generator", "Reach").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from backend.pipeline.framepack.pinned import pin_module_in_place
from backend.pipeline.framepack.residency import MemoryPlan, fit_tiers, plan_residency

log = logging.getLogger(__name__)

GIB = 1024**3


def plan_for_mode(
    mode: str, offload_weights: str = "bf16", text_on_disk: bool | None = None, dtype: str = "bf16"
) -> MemoryPlan:
    """A plan forced by name (tests and STUDIO_GPU_PROFILE): resident / fp8 / offload / cpu."""
    if mode == "cpu":
        return MemoryPlan("cpu", None, False, dtype="fp32", tiers=("gpu",) * 60)
    weights = "8bit" if mode == "fp8" or (mode == "offload" and offload_weights == "fp8") else "2byte"
    tier = "ram" if mode == "offload" else "gpu"
    on_disk = mode == "offload" if text_on_disk is None else text_on_disk
    return MemoryPlan(
        mode,
        offload_weights if mode == "offload" else None,
        on_disk,
        dtype=dtype,
        weights=weights,
        blocks_gpu=0 if tier == "ram" else 60,
        blocks_ram=60 if tier == "ram" else 0,
        tiers=(tier,) * 60,
    )


def free_host_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / GIB


def return_freed_host_memory() -> None:
    """Gives the heap's freed pages back to the OS (glibc `malloc_trim`).

    Tensors under glibc's mmap threshold (32 MB: most 8-bit weights) live on the heap; after
    loading and page-locking the weights, the freed staging copies stay mapped to the process
    (3-4 GiB measured in offload mode) unless trimmed.
    """
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def enable_expandable_segments() -> None:
    """Let the CUDA caching allocator grow segments in place: reserved stays near allocated.

    Without it, offload mode's many differently sized layer uploads fragment the cache (14 GiB
    reserved for 5.7 GiB allocated in the reference run). Must run before the first CUDA allocation
    of the process to apply everywhere; later it applies to new segments.
    """
    import torch

    try:
        torch.cuda.memory._set_allocator_settings("expandable_segments:True")
    except (AttributeError, RuntimeError) as exc:  # older torch or unsupported platform
        log.info("expandable segments not available: %s", exc)


@dataclass
class EncoderPlacement:
    """`Placement` for fp8 and offload modes: encoders use the GPU only while a job encodes.

    The Llama text encoder (8B, 16 GB in bf16) never moves whole: it streams layer by layer, from
    pinned host memory in fp8 mode (`stream_from_host`) or from disk in offload mode and in fp8
    mode short of host RAM (`disk_stream`), so it runs on a 6 GB card and leaves a 24 GB card to the fp8 transformer.
    The small CLIP and SigLIP encoders (1 GB together) are moved to the GPU for encoding and back
    afterwards.
    """

    pipe: object
    device: str
    text_stream: object = None  # the DiskStream of the text encoder in offload mode
    block_stream: object = None  # the BlockStreamer of the transformer in offload mode

    def encoders_on(self) -> None:
        for name in ("text_encoder_2", "image_encoder"):
            getattr(self.pipe, name).to(self.device)

    def encoders_off(self) -> None:
        import torch

        for name in ("text_encoder_2", "image_encoder"):
            getattr(self.pipe, name).to("cpu")
        torch.cuda.empty_cache()


def stream_from_host(module, device: str) -> int:
    """Keeps `module` in page-locked host memory and streams its layers to the GPU as they run."""
    import torch
    from diffusers.hooks import apply_group_offloading

    module.to("cpu")
    pinned = pin_module_in_place(module)
    apply_group_offloading(
        module,
        onload_device=torch.device(device),
        offload_device=torch.device("cpu"),
        offload_type="leaf_level",
        use_stream=True,
        record_stream=True,
    )
    return pinned


def place(
    pipe,
    device: str,
    plan: MemoryPlan | str,
    offload_weights: str = "bf16",
    scratch_dir: Path | None = None,
    storage_format: str = "int8",
    text_on_disk: bool | None = None,
    read_ahead: int = 2,
    read_threads: int = 8,
):
    """Puts the pipeline's parts where `plan` says; returns the encoder placement for jobs (or None).

    The pipeline's weights may start on the host (after loading from disk), on the GPU (the
    benchmark builds them there) or already in their tiers (the lean loader places each block as it
    is read); either way each part moves once, layer by layer where it is large, so host memory
    never holds more than the final placement plus one layer. `plan` may name a mode (resident /
    fp8 / offload; then `offload_weights` and `text_on_disk` complete it); `scratch_dir` holds the
    text encoder's layer files and the disk-tier blocks; `storage_format` (fp8/int8) is how 8-bit
    weights are stored.
    """
    import torch

    from backend.pipeline.framepack.weight_storage import StoredLinear8, store_linears_8bit

    if isinstance(plan, str):
        if plan not in ("cpu", "resident", "fp8", "offload"):
            raise ValueError(f"unknown memory mode {plan!r}")
        plan = plan_for_mode(plan, offload_weights, text_on_disk)
    mode = plan.mode
    transformer = pipe.transformer
    tiers = fit_tiers(plan.tiers, len(transformer.transformer_blocks), len(transformer.single_transformer_blocks))
    if mode in ("cpu", "resident") and all(t == "gpu" for t in tiers):
        pipe.to(device)
        return None
    cuda = device == "cuda"
    if cuda:
        enable_expandable_segments()
    for name in ("text_encoder_2", "image_encoder"):
        getattr(pipe, name).to("cpu")
    text_stream = None
    if plan.text_on_disk:
        from backend.pipeline.framepack.disk_stream import stream_from_disk

        text_stream = getattr(pipe.text_encoder, "_studio_disk_stream", None)  # streamed while loading
        if text_stream is None:
            if scratch_dir is None:
                raise ValueError("the text encoder on disk needs a scratch directory for its layers")
            text_stream = stream_from_disk(pipe.text_encoder, device, scratch_dir)
        log.info(
            "%s: text encoder (%.1f GiB) streams from %s", mode, text_stream.bytes_on_disk / GIB, text_stream.folder
        )
    elif cuda:
        text_bytes = stream_from_host(pipe.text_encoder, device)
        log.info("%s: text encoder (%.1f GiB) streams from pinned host memory", mode, text_bytes / GIB)
    else:
        pipe.text_encoder.to(device)
    if cuda:
        torch.cuda.empty_cache()
    if plan.weights == "8bit" and not any(isinstance(m, StoredLinear8) for m in transformer.modules()):
        count, saved = store_linears_8bit(transformer, storage_format, work_device=device)
        log.info("%s: %d linear layers stored in %s (%.1f GiB saved)", mode, count, storage_format, saved / GIB)
    blocks = None
    if all(t == "gpu" for t in tiers):
        transformer.to(device)
    else:
        from backend.pipeline.framepack.block_stream import stream_blocks

        if cuda:
            torch.cuda.empty_cache()
        blocks = stream_blocks(
            transformer,
            device,
            tiers,
            disk_dir=None if scratch_dir is None else Path(scratch_dir) / "blocks",
            read_ahead=read_ahead,
            read_threads=read_threads,
        )
        log.info(
            "%s: %d blocks on the GPU, %d in pinned RAM (%.1f GiB), %d on disk (%.1f GiB), %s weights",
            mode,
            tiers.count("gpu"),
            tiers.count("ram"),
            blocks.pinned_bytes / GIB,
            tiers.count("disk"),
            blocks.bytes_on_disk / GIB,
            plan.weights,
        )
    pipe.vae.to(device)
    pipe.vae.enable_tiling()
    if cuda:
        torch.cuda.empty_cache()
    return_freed_host_memory()
    return EncoderPlacement(pipe, device, text_stream, blocks)


__all__ = [
    "MemoryPlan",
    "plan_residency",
    "plan_for_mode",
    "place",
    "return_freed_host_memory",
    "EncoderPlacement",
    "free_host_gib",
    "enable_expandable_segments",
    "stream_from_host",
]
