"""Where FramePack's weights live on a given machine: memory modes, placement, pinned host memory.

Modes (chosen from free VRAM and host RAM when the model loads, or forced by STUDIO_GPU_PROFILE):

- resident: bf16 weights on the GPU (26 GiB) with untiled VAE decode (+22 GiB peak at 640²).
- fp8: weights stored in fp8 and cast to bf16 layer by layer as they run (layerwise casting), so the
  13B transformer takes 12 GiB and fits a 24 GB card next to a tiled VAE decode.
- offload: the transformer stays in pinned host memory and streams to the GPU layer by layer on a
  side stream, overlapping compute (group offloading); text and image encoders are on the GPU only
  while a job encodes its prompt and images, then go back to host memory before sampling; VAE tiled.

Figures behind the thresholds are in benchmarks/README.md ("FramePack generator").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

GIB = 1024**3
# Free VRAM to keep everything resident: weights 26 GiB + untiled decode (54 GiB reserved measured
# on an H100 with the plain pipeline; ours streams frames off the GPU but the decode peak remains).
RESIDENT_MIN_FREE_GIB = 40
# fp8 storage: 12 GiB transformer + 1.5 GiB VAE/encoders + ~5 GiB activations + tiled decode.
FP8_MIN_FREE_GIB = 20
# Offload keeps the bf16 transformer (24 GiB) plus VAE and encoders in host RAM.
OFFLOAD_MIN_HOST_GIB = 30
ENCODERS = ("text_encoder", "text_encoder_2", "image_encoder")


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


def free_host_gib() -> float:
    import psutil

    return psutil.virtual_memory().available / GIB


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
    return total


@dataclass
class EncoderPlacement:
    """`Placement` for fp8 and offload modes: encoders use the GPU only while a job encodes.

    The Llama text encoder (8B, 16 GB in bf16) never moves whole: it is group-offloaded layer by
    layer from pinned host memory (`stream_from_host`), so it runs on a 6 GB card and leaves a
    24 GB card to the fp8 transformer. The small CLIP and SigLIP encoders (1 GB together) are moved
    to the GPU for encoding and back afterwards.
    """

    pipe: object
    device: str

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


def place(pipe, device: str, mode: str):
    """Puts the pipeline's parts where `mode` says; returns the encoder placement for jobs (or None)."""
    import torch

    if mode in ("cpu", "resident"):
        pipe.to(device)
        return None
    if mode not in ("fp8", "offload"):
        raise ValueError(f"unknown memory mode {mode!r}")
    enable_expandable_segments()
    for name in ENCODERS:
        getattr(pipe, name).to("cpu")
    text_bytes = stream_from_host(pipe.text_encoder, device)
    if mode == "fp8":
        # Weights stored in fp8, each layer cast to bf16 as it runs: the transformer halves.
        pipe.transformer.enable_layerwise_casting(
            storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16
        )
        pipe.transformer.to(device)
    else:
        pipe.transformer.to("cpu")
        pinned = pin_module_in_place(pipe.transformer)
        log.info("offload: %.1f GiB of transformer weights page-locked in place", pinned / GIB)
        pipe.transformer.enable_group_offload(
            onload_device=torch.device(device), offload_device=torch.device("cpu"),
            offload_type="leaf_level", use_stream=True, record_stream=True,
        )
    log.info("%s: text encoder (%.1f GiB) streams from pinned host memory", mode, text_bytes / GIB)
    pipe.vae.to(device)
    pipe.vae.enable_tiling()
    torch.cuda.empty_cache()
    return EncoderPlacement(pipe, device)


__all__ = ["choose_memory_mode", "place", "pin_module_in_place", "EncoderPlacement", "free_host_gib",
           "enable_expandable_segments", "stream_from_host", "RESIDENT_MIN_FREE_GIB", "FP8_MIN_FREE_GIB"]
