"""Page-locked host memory of exactly the size asked for (PyTorch's pinned allocator rounds up).

Both the whole-module offload (`memory.stream_from_host`) and the block streamer pin through here.
"""

from __future__ import annotations

import weakref


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
        view = flat[offset : offset + nbytes].view(t.dtype).view(t.shape)
        view.copy_(t.data)
        t.data = view  # the old storage is freed here, so peak RAM stays about one copy
    _register(flat)
    module._studio_pinned_buffer = flat  # keep the registered memory alive with the module
    return total


def _register(flat) -> None:
    """Page-locks a CPU uint8 tensor in place, unregistered when the tensor is freed."""
    import torch

    result = torch.cuda.cudart().cudaHostRegister(flat.data_ptr(), flat.numel(), 0)
    code = getattr(result, "value", result)
    if code not in (0, None):
        raise RuntimeError(f"cudaHostRegister failed with CUDA error {code}")
    # Unregister when the buffer goes (the module is dropped): a registration left on freed pages
    # makes later copies from memory reusing those addresses fail ("invalid argument", seen when a
    # test built a new pipeline after an offloaded one was collected). The parameter views may
    # outlive `flat` by a moment; their copies are then merely unpinned, never wrong.
    done = weakref.finalize(flat, torch.cuda.cudart().cudaHostUnregister, flat.data_ptr())
    done.atexit = False  # at exit the CUDA context may already be gone


def pinned_empty(nbytes: int, pin: bool = True):
    """A uint8 host buffer of exactly `nbytes`, page-locked when `pin` (PyTorch's pinned allocator
    would round it up to a power of two: 512 MiB for a 325 MiB block)."""
    import torch

    flat = torch.empty(max(1, nbytes), dtype=torch.uint8)
    if pin:
        _register(flat)
    return flat
