"""Offload mode's transformer: blocks held in pinned host memory, copied to the GPU one block ahead.

Why not diffusers' leaf-level group offloading: it hooks each of the ~600 linear layers, so the
hooks sit inside the compiled blocks; dynamo traces into them, guards on per-layer names and hits
its recompile limit (seen on the H100: the blocks fell back to eager). Here there are two hooks
per transformer block, both opaque to the compiler and shared by every block (one object, so the
compiled block code serves all 60 blocks), and each block moves as ~20 large copies instead of
hundreds of small ones, which is what PCIe is fast at.

While block i computes on the default stream, block i+1 is copied on a side stream; the compute
stream waits on that copy's event before block i+1 runs. After block i the parameters point back
at their host copies and the GPU copies are freed (`record_stream` keeps the allocator from reusing
them before the compute that reads them is done). After the last block, the first one is fetched
for the next step. Everything that is not a block (embedders, token refiner, output head: about
0.5 GiB) stays on the GPU.
"""

from __future__ import annotations

import torch
from torch import nn

from backend.pipeline.disk_stream import module_tensors, move_own_tensors


def _set(mod: nn.Module, name: str, is_param: bool, value: torch.Tensor) -> None:
    if is_param:
        mod._parameters[name].data = value
    else:
        mod._buffers[name] = value


class BlockStreamer:
    def __init__(self, transformer: nn.Module, block_lists: list[nn.ModuleList], device) -> None:
        from backend.pipeline.memory import pin_module_in_place

        self.device = torch.device(device)
        self.blocks: list[nn.Module] = [b for blocks in block_lists for b in blocks]
        self.index = {id(b): i for i, b in enumerate(self.blocks)}
        in_blocks = {id(m) for m in block_lists}
        # What is not a block lives on the GPU for good.
        for child in transformer.children():
            if id(child) not in in_blocks:
                child.to(self.device)
        move_own_tensors(transformer, self.device)
        self.pinned_bytes = 0
        for blocks in block_lists:
            blocks.to("cpu")
            self.pinned_bytes += pin_module_in_place(blocks)
        tensors = [list(module_tensors(b)) for b in self.blocks]
        self.slots = [[(mod, name, is_param) for mod, name, _, is_param in ts] for ts in tensors]
        self.host = [[t.data for *_, t, _ in ts] for ts in tensors]
        self.stream = torch.cuda.Stream(self.device)
        self.ready: dict[int, tuple[torch.cuda.Event, list[torch.Tensor]]] = {}
        # One callable object each, registered on every block: see the module docstring.
        pre = torch.compiler.disable(self._before)
        post = torch.compiler.disable(self._after)
        for b in self.blocks:
            b.register_forward_pre_hook(pre)
            b.register_forward_hook(post)

    def _fetch(self, i: int) -> None:
        with torch.cuda.stream(self.stream):
            copies = [h.to(self.device, non_blocking=True) for h in self.host[i]]
            event = torch.cuda.Event()
            event.record(self.stream)
        self.ready[i] = (event, copies)

    def _before(self, module: nn.Module, args) -> None:
        i = self.index[id(module)]
        for k in [k for k in self.ready if k != i]:
            # A block skipped since its prefetch (a draft cache hit): drop the stale copy.
            del self.ready[k]
        if i not in self.ready:
            self._fetch(i)
        event, copies = self.ready.pop(i)
        compute = torch.cuda.current_stream(self.device)
        compute.wait_event(event)
        for (mod, name, is_param), gpu in zip(self.slots[i], copies):
            gpu.record_stream(compute)
            _set(mod, name, is_param, gpu)
        self._fetch((i + 1) % len(self.blocks))

    def _after(self, module: nn.Module, args, output) -> None:
        i = self.index[id(module)]
        for (mod, name, is_param), host in zip(self.slots[i], self.host[i]):
            _set(mod, name, is_param, host)


def stream_blocks(transformer: nn.Module, device) -> BlockStreamer:
    """Offloads the FramePack (HunyuanVideo) transformer's dual- and single-stream blocks."""
    return BlockStreamer(transformer, [transformer.transformer_blocks, transformer.single_transformer_blocks],
                         device)


__all__ = ["BlockStreamer", "stream_blocks"]
