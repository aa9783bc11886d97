"""Where FramePack's weights live on a given machine: memory modes, placement, pinned host memory.

Modes (chosen from free VRAM and host RAM when the model loads, or forced by STUDIO_GPU_PROFILE):

- resident: bf16 weights on the GPU (26 GiB) with untiled VAE decode (+22 GiB peak at 640²).
- fp8: the transformer's linear weights stored in fp8 with a scale per output channel and
  dequantised to bf16 as each layer runs (`weight_storage.py`; float8 or int8), so the 13B transformer takes 12 GiB
  and fits a 24 GB card next to a tiled VAE decode.
- offload: the transformer's blocks stay in pinned host memory and are copied to the GPU one block
  ahead of compute on a side stream (`block_stream.py`); its weights are held in bf16, or in 8 bits
  when host RAM is short (`choose_offload_weights`). The 8B text encoder lives on disk and visits the
  GPU layer by layer while a job encodes its prompt (`disk_stream.py`); CLIP and SigLIP are on the
  GPU only while a job encodes, then go back to host memory before sampling; VAE tiled.

Figures behind the thresholds are in benchmarks/README.md ("FramePack generator").
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GIB = 1024**3
# Free VRAM to keep everything resident: weights 26 GiB + untiled decode (54 GiB reserved measured
# on an H100 with the plain pipeline; ours streams frames off the GPU but the decode peak remains).
RESIDENT_MIN_FREE_GIB = 40
# fp8 storage: 12 GiB transformer + 1.5 GiB VAE/encoders + ~5 GiB activations + tiled decode.
FP8_MIN_FREE_GIB = 20
# Offload keeps the bf16 transformer (24 GiB) plus VAE and encoders in host RAM.
OFFLOAD_MIN_HOST_GIB = 30
# fp8 mode pins the 8B text encoder (16 GB) in host RAM for fast prompts when RAM leaves room for it
# next to the process and the 12 GiB of 8-bit weights staged while loading.
TEXT_PINNED_MIN_HOST_GIB = 40
# bf16 host weights for offload: 24 GiB pinned + ~3 GiB of process (torch, CUDA, VAE, CLIP, SigLIP)
# + room for the rest of the machine; below it the weights are held in fp8 (12 GiB).
OFFLOAD_BF16_MIN_HOST_GIB = 34


def choose_memory_mode(requested: str, device: str, free_vram_gib: float,
                       free_host_gib: float | None = None) -> str:
    """resident / fp8 / offload (or cpu without a GPU); `requested` other than auto wins."""
    if device != "cuda":
        return "cpu"
    if requested != "auto":
        return requested
    if free_vram_gib >= RESIDENT_MIN_FREE_GIB:
        return "resident"
    if free_vram_gib >= FP8_MIN_FREE_GIB:
        return "fp8"
    if free_host_gib is not None and free_host_gib < OFFLOAD_MIN_HOST_GIB and free_vram_gib >= FP8_MIN_FREE_GIB - 4:
        # Too little host RAM to stage the bf16 transformer: fp8 on a card just under the line
        # beats swapping on the host.
        return "fp8"
    return "offload"


def text_encoder_on_disk(mode: str, free_host_gib: float | None) -> bool:
    """Offload mode always; fp8 mode too when host RAM could not also hold 16 GB of pinned encoder."""
    if mode == "offload":
        return True
    return mode == "fp8" and free_host_gib is not None and free_host_gib < TEXT_PINNED_MIN_HOST_GIB


def choose_offload_weights(requested: str, free_host_gib: float | None) -> str:
    """bf16 or fp8 for the transformer weights offload mode keeps in host RAM."""
    if requested != "auto":
        return requested
    if free_host_gib is not None and free_host_gib < OFFLOAD_BF16_MIN_HOST_GIB:
        return "fp8"
    return "bf16"


@dataclass(frozen=True)
class MemoryPlan:
    """Where the weights go, decided once from free VRAM and host RAM before anything is read.

    Deciding again after reading would see the RAM the weights now take and choose differently
    (bf16 offload read, then 8-bit chosen at placement).
    """

    mode: str  # cpu / resident / fp8 / offload
    offload_weights: str | None  # bf16 / fp8 host weights, offload mode only
    text_on_disk: bool


def plan_memory(gpu_profile: str, offload_request: str, device: str, free_vram_gib: float,
                free_host_gib: float | None, mode: str | None = None) -> MemoryPlan:
    """The plan for these settings and free memory; `mode` given overrides the choice of mode."""
    mode = mode or choose_memory_mode(gpu_profile, device, free_vram_gib, free_host_gib)
    offload_weights = choose_offload_weights(offload_request, free_host_gib) if mode == "offload" else None
    return MemoryPlan(mode, offload_weights, text_encoder_on_disk(mode, free_host_gib))


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


def pin_module_in_place(module) -> int:
    """Moves a CPU module's parameters and buffers into one page-locked host buffer; returns bytes.

    `Tensor.pin_memory()` copies each tensor into PyTorch's pinned caching allocator, which rounds
    every block up to a power of two: 24 GiB of weights take 35-40 GiB of RAM that way. Here all
    tensors become views of one flat buffer that is page-locked once with cudaHostRegister, so the
    pinned copy costs exactly the weights' size, and group offloading (which calls `pin_memory()`,
    a no-op on pinned tensors) reuses it.
    """
    import torch

    tensors = [t for t in list(module.parameters()) + list(module.buffers()) if t.device.type == "cpu"]
    seen: set[int] = set()
    unique = []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            unique.append(t)
    align = 64
    offsets, total = [], 0
    for t in unique:
        offsets.append(total)
        total += (t.numel() * t.element_size() + align - 1) // align * align
    if total == 0:
        return 0
    flat = torch.empty(total, dtype=torch.uint8)
    for t, offset in zip(unique, offsets):
        nbytes = t.numel() * t.element_size()
        view = flat[offset: offset + nbytes].view(t.dtype).view(t.shape)
        view.copy_(t.data)
        t.data = view  # the old storage is freed here, so peak RAM stays about one copy
    result = torch.cuda.cudart().cudaHostRegister(flat.data_ptr(), total, 0)
    code = getattr(result, "value", result)
    if code not in (0, None):
        raise RuntimeError(f"cudaHostRegister failed with CUDA error {code}")
    module._studio_pinned_buffer = flat  # keep the registered memory alive with the module
    # Unregister when the buffer goes (the module is dropped): a registration left on freed pages
    # makes later copies from memory reusing those addresses fail ("invalid argument", seen when a
    # test built a new pipeline after an offloaded one was collected). The parameter views may
    # outlive `flat` by a moment; their copies are then merely unpinned, never wrong.
    done = weakref.finalize(flat, torch.cuda.cudart().cudaHostUnregister, flat.data_ptr())
    done.atexit = False  # at exit the CUDA context may already be gone
    return total


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
    apply_group_offloading(module, onload_device=torch.device(device), offload_device=torch.device("cpu"),
                           offload_type="leaf_level", use_stream=True, record_stream=True)
    return pinned


def place(pipe, device: str, mode: str, offload_weights: str = "bf16", scratch_dir: Path | None = None,
          storage_format: str = "int8", text_on_disk: bool | None = None):
    """Puts the pipeline's parts where `mode` says; returns the encoder placement for jobs (or None).

    The pipeline's weights may start on the host (after loading from disk) or on the GPU (the
    benchmark builds them there); either way each part moves once, layer by layer where it is
    large, so host memory never holds more than the final placement plus one layer.
    `offload_weights` (bf16/fp8) and `scratch_dir` (where the text encoder's layers are written)
    apply to offload mode; `storage_format` (fp8/int8) is how 8-bit weights are stored;
    `text_on_disk` (default: offload mode only) streams the text encoder from disk, not pinned RAM.
    """
    import torch

    from backend.pipeline.weight_storage import store_linears_8bit

    if mode in ("cpu", "resident"):
        pipe.to(device)
        return None
    if mode not in ("fp8", "offload"):
        raise ValueError(f"unknown memory mode {mode!r}")
    enable_expandable_segments()
    for name in ("text_encoder_2", "image_encoder"):
        getattr(pipe, name).to("cpu")
    text_stream = None
    if text_on_disk is None:
        text_on_disk = mode == "offload"
    if text_on_disk:
        from backend.pipeline.disk_stream import stream_from_disk

        text_stream = getattr(pipe.text_encoder, "_studio_disk_stream", None)  # streamed while loading
        if text_stream is None:
            if scratch_dir is None:
                raise ValueError("the text encoder on disk needs a scratch directory for its layers")
            text_stream = stream_from_disk(pipe.text_encoder, device, scratch_dir)
        log.info("%s: text encoder (%.1f GiB) streams from %s", mode, text_stream.bytes_on_disk / GIB,
                 text_stream.folder)
    else:
        text_bytes = stream_from_host(pipe.text_encoder, device)
        log.info("fp8: text encoder (%.1f GiB) streams from pinned host memory", text_bytes / GIB)
    torch.cuda.empty_cache()
    transformer = pipe.transformer
    if mode == "fp8" or offload_weights == "fp8":
        count, saved = store_linears_8bit(transformer, storage_format, work_device=device)
        log.info("%s: %d linear layers stored in %s (%.1f GiB saved)", mode, count, storage_format, saved / GIB)
    blocks = None
    if mode == "fp8":
        transformer.to(device)
    else:
        from backend.pipeline.block_stream import stream_blocks

        torch.cuda.empty_cache()
        blocks = stream_blocks(transformer, device)
        log.info("offload: %.1f GiB of %s transformer blocks page-locked in place, streamed block by block",
                 blocks.pinned_bytes / GIB, offload_weights)
    pipe.vae.to(device)
    pipe.vae.enable_tiling()
    torch.cuda.empty_cache()
    return_freed_host_memory()
    return EncoderPlacement(pipe, device, text_stream, blocks)


__all__ = ["MemoryPlan", "plan_memory", "choose_memory_mode", "choose_offload_weights", "text_encoder_on_disk", "place", "return_freed_host_memory", "pin_module_in_place", "EncoderPlacement", "free_host_gib",
           "enable_expandable_segments", "stream_from_host", "RESIDENT_MIN_FREE_GIB", "FP8_MIN_FREE_GIB"]
