"""The transformer's blocks in three tiers: on the GPU, in pinned host RAM, in files on disk.

The memory plan (`residency.py`) says where each of the 60 blocks lives. GPU blocks stay put.
The others are copied to the GPU one streamed block ahead of compute: while block i computes on
the default stream, the next streamed block (which may be several GPU blocks further on) is copied
on a side stream, and the compute stream waits on that copy's event before it runs. After a
streamed block the parameters point back at their host copies (RAM tier) or at an empty
placeholder (disk tier) and the GPU copies are freed (`record_stream` keeps the allocator from
reusing them before the compute that reads them is done).

Disk blocks are written once, each to one flat file of its tensors in their stored form (8-bit
weights stay 8-bit), and read back with plain reads into a small pool of pinned buffers,
`read_ahead` disk blocks ahead of the one the GPU needs next. The process holds at most
`read_ahead` disk blocks; the kernel's page cache may keep the files (it can drop them). Each
block is read in `read_threads` page-aligned slices by as many threads: one thread copied from the
page cache at only 4-5 GiB/s, below what the GPU consumes in the 6-8 GB plans. Slices are queued
in block order, so the block needed next gets every thread first.

Why not diffusers' leaf-level group offloading: it hooks each of the ~600 linear layers, so the
hooks sit inside the compiled blocks; dynamo traces into them, guards on per-layer names and hits
its recompile limit (seen on the H100: the blocks fell back to eager). Here there are two hooks
per block, both opaque to the compiler and shared by every block (one object, so the compiled
block code serves all 60 blocks), and each block moves as ~20 large copies.
"""

from __future__ import annotations

import os
import shutil
import uuid
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from backend.pipeline.framepack.disk_stream import module_tensors, move_own_tensors, remove_stale
from backend.pipeline.framepack.pinned import pin_module_in_place, pinned_empty

ALIGN = 4096  # file and buffer offsets: page-aligned reads


def _set(mod: nn.Module, name: str, is_param: bool, value: torch.Tensor) -> None:
    if is_param:
        mod._parameters[name].data = value
    else:
        mod._buffers[name] = value


def _placeholder(t: torch.Tensor) -> torch.Tensor:
    """A CPU tensor of `t`'s shape and dtype that owns one element (parameters cannot be meta)."""
    return torch.empty(1, dtype=t.dtype).expand(t.shape)


@dataclass
class BlockFile:
    """One block's tensors, in order, in one file: (offset, nbytes, dtype, shape) each."""

    path: Path
    layout: list[tuple[int, int, torch.dtype, tuple[int, ...]]]
    nbytes: int


def write_block(tensors: list[torch.Tensor], path: Path) -> BlockFile:
    layout, offset = [], 0
    with open(path, "wb") as f:
        for t in tensors:
            data = t.detach().contiguous().to("cpu")
            nbytes = data.numel() * data.element_size()
            f.seek(offset)
            f.write(data.view(torch.uint8).reshape(-1).numpy().tobytes() if nbytes else b"")
            layout.append((offset, nbytes, data.dtype, tuple(data.shape)))
            offset += (nbytes + ALIGN - 1) // ALIGN * ALIGN
        f.truncate(offset)  # the buffer and the file have the same, page-rounded size
    return BlockFile(path, layout, offset)


def _read_range(path: Path, view: memoryview, start: int, end: int) -> None:
    """Bytes [start, end) of the file into the same bytes of `view` (the read releases the GIL)."""
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        done = start
        while done < end:
            got = f.readinto(view[done:end])
            if not got:
                raise OSError(f"{path}: short read at {done} of {end} bytes")
            done += got


def _slices(nbytes: int, parts: int) -> list[tuple[int, int]]:
    """`parts` page-aligned ranges covering [0, nbytes)."""
    step = -(-nbytes // max(1, parts) // ALIGN) * ALIGN or ALIGN
    return [(lo, min(lo + step, nbytes)) for lo in range(0, nbytes, step)]


def _views(block_file: BlockFile, buffer: torch.Tensor) -> list[torch.Tensor]:
    return [buffer[o : o + n].view(dtype).view(shape) for o, n, dtype, shape in block_file.layout]


class BlockStreamer:
    def __init__(
        self,
        transformer: nn.Module,
        block_lists: list[nn.ModuleList],
        device,
        tiers: list[str] | None = None,
        disk_dir: Path | None = None,
        read_ahead: int = 2,
        read_threads: int = 8,
    ) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.blocks: list[nn.Module] = [b for blocks in block_lists for b in blocks]
        n = len(self.blocks)
        self.tiers = list(tiers) if tiers is not None else ["ram"] * n
        if len(self.tiers) != n or set(self.tiers) - {"gpu", "ram", "disk"}:
            raise ValueError(f"tiers must name gpu/ram/disk for each of the {n} blocks")
        self.index = {id(b): i for i, b in enumerate(self.blocks)}
        in_blocks = {id(m) for m in block_lists}
        # What is not a block lives on the GPU for good.
        for child in transformer.children():
            if id(child) not in in_blocks:
                child.to(self.device)
        move_own_tensors(transformer, self.device)
        for i, b in enumerate(self.blocks):
            if self.tiers[i] == "gpu":
                b.to(self.device)
        tensors = [list(module_tensors(b)) for b in self.blocks]
        self.slots = [[(mod, name, is_param) for mod, name, _, is_param in ts] for ts in tensors]
        self.files: dict[int, BlockFile] = {}
        if "disk" in self.tiers:
            if disk_dir is None:
                raise ValueError("disk-tier blocks need a folder for their files")
            written = [getattr(self.blocks[i], "_studio_block_file", None) for i in self._tier("disk")]
            # Blocks the lean loader already wrote keep their folder (removed with the streamer).
            self.folder = written[0].path.parent if all(written) else self._make_folder(Path(disk_dir))
            for i in self._tier("disk"):
                self.files[i] = getattr(self.blocks[i], "_studio_block_file", None) or write_block(
                    [t for *_, t, _ in tensors[i]], self.folder / f"block{i:03d}.bin"
                )
                for (mod, name, is_param), (*_, t, _) in zip(self.slots[i], tensors[i]):
                    _set(mod, name, is_param, _placeholder(t))
        ram = nn.ModuleList([self.blocks[i] for i in self._tier("ram")])
        for b in ram:
            b.to("cpu")
        # Pinned once for all RAM blocks; the container keeps the registered buffer alive.
        self._ram_container = ram
        self.pinned_bytes = pin_module_in_place(ram) if self.cuda and len(ram) else 0
        self.host = [
            [t.data for *_, t, _ in module_tensors(b)] if self.tiers[i] == "ram" else None
            for i, b in enumerate(self.blocks)
        ]
        self.streamed = [i for i in range(n) if self.tiers[i] != "gpu"]
        # For each block, the next streamed block after it (cyclically): what to prefetch.
        self.next_streamed = {}
        for i in range(n):
            later = [j for j in self.streamed if j > i] or self.streamed
            self.next_streamed[i] = later[0] if later else None
        self.disk_order = self._tier("disk")
        self.read_ahead = max(1, read_ahead)
        biggest = max((f.nbytes for f in self.files.values()), default=0)
        self._free: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []
        for _ in range(min(self.read_ahead, len(self.disk_order))):
            self._free.append((pinned_empty(biggest, self.cuda), None))
        self.buffer_bytes = biggest * len(self._free)
        self._reads: dict[int, tuple[list[Future], torch.Tensor]] = {}
        self.read_threads = max(1, read_threads)
        self._reader = ThreadPoolExecutor(self.read_threads, thread_name_prefix="block-reader") if self.files else None
        self.max_reads_in_flight = 0  # tests: never above read_ahead
        self.disk_reads = 0
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.ready: dict[int, tuple[object, list[torch.Tensor]]] = {}
        # One callable object each, registered on every block: see the module docstring.
        pre = torch.compiler.disable(self._before)
        post = torch.compiler.disable(self._after)
        for i, b in enumerate(self.blocks):
            b.register_forward_pre_hook(pre)
            if self.tiers[i] != "gpu":
                b.register_forward_hook(post)

    # --- set-up -------------------------------------------------------------------------------
    def _tier(self, name: str) -> list[int]:
        return [i for i, t in enumerate(self.tiers) if t == name]

    @staticmethod
    def _make_folder(root: Path) -> Path:
        remove_stale(root)
        folder = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def close(self) -> None:
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        folder = getattr(self, "folder", None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    @property
    def bytes_on_disk(self) -> int:
        return sum(f.nbytes for f in self.files.values())

    # --- disk reads ---------------------------------------------------------------------------
    def _schedule_reads(self, after: int) -> None:
        """Keeps up to `read_ahead` reads of the next disk blocks (cyclic from `after`) queued."""
        if not self.disk_order:
            return
        k = len(self.disk_order)
        start = next((p for p, j in enumerate(self.disk_order) if j >= after), 0)
        for step in range(k):
            j = self.disk_order[(start + step) % k]
            if len(self._reads) >= self.read_ahead or not self._free:
                break
            if j in self._reads or j in self.ready:
                continue
            buf, event = self._free.pop(0)
            if event is not None:
                event.synchronize()  # the last GPU copy out of this buffer must be done
            view, f = memoryview(buf.numpy()), self.files[j]
            self._reads[j] = (
                [
                    self._reader.submit(_read_range, f.path, view, lo, hi)
                    for lo, hi in _slices(f.nbytes, self.read_threads)
                ],
                buf,
            )
            self.max_reads_in_flight = max(self.max_reads_in_flight, len(self._reads))

    def _take_read(self, j: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        if j not in self._reads:
            self._schedule_reads(j)
        if j not in self._reads:  # every buffer holds a block read for later: wait for one
            victim = next(iter(self._reads))
            futures, buf = self._reads.pop(victim)
            for fut in futures:
                fut.result()
            self._free.append((buf, None))
            self._schedule_reads(j)
        futures, buf = self._reads.pop(j)
        for fut in futures:
            fut.result()
        self.disk_reads += 1
        return _views(self.files[j], buf), buf

    # --- hooks --------------------------------------------------------------------------------
    def _fetch(self, i: int) -> None:
        if self.tiers[i] == "disk":
            sources, buf = self._take_read(i)
        else:
            sources, buf = self.host[i], None
        if self.cuda:
            with torch.cuda.stream(self.stream):
                copies = [h.to(self.device, non_blocking=True) for h in sources]
                event = torch.cuda.Event()
                event.record(self.stream)
        else:
            # Without a GPU the "copy" is a real one for disk blocks: their buffer is reused.
            copies = [h.clone() for h in sources] if buf is not None else list(sources)
            event = None
        if buf is not None:
            self._free.append((buf, event))
        self.ready[i] = (event, copies)
        self._schedule_reads(i + 1)

    def _before(self, module: nn.Module, args) -> None:
        i = self.index[id(module)]
        if self.tiers[i] != "gpu":
            for k in [k for k in self.ready if k != i and k != self.next_streamed[i]]:
                # A block skipped since its prefetch (a draft cache hit): drop the stale copy.
                del self.ready[k]
            if i not in self.ready:
                self._fetch(i)
            event, copies = self.ready.pop(i)
            if self.cuda:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_event(event)
            for (mod, name, is_param), gpu in zip(self.slots[i], copies):
                if self.cuda:
                    gpu.record_stream(compute)
                _set(mod, name, is_param, gpu)
        nxt = self.next_streamed[i]
        if nxt is not None and nxt != i and nxt not in self.ready:
            self._fetch(nxt)

    def _after(self, module: nn.Module, args, output) -> None:
        i = self.index[id(module)]
        if self.tiers[i] == "ram":
            for (mod, name, is_param), host in zip(self.slots[i], self.host[i]):
                _set(mod, name, is_param, host)
        else:
            for (mod, name, is_param), layout in zip(self.slots[i], self.files[i].layout):
                _set(mod, name, is_param, torch.empty(1, dtype=layout[2]).expand(layout[3]))


def transformer_blocks(transformer: nn.Module) -> list[nn.ModuleList]:
    """The FramePack (HunyuanVideo) transformer's dual- and single-stream blocks, in compute order."""
    return [transformer.transformer_blocks, transformer.single_transformer_blocks]


def stream_blocks(
    transformer: nn.Module,
    device,
    tiers: list[str] | None = None,
    disk_dir: Path | None = None,
    read_ahead: int = 2,
    read_threads: int = 8,
) -> BlockStreamer:
    """Streams the transformer's blocks that `tiers` does not put on the GPU (default: all in RAM)."""
    streamer = BlockStreamer(
        transformer, transformer_blocks(transformer), device, tiers, disk_dir, read_ahead, read_threads
    )
    weakref.finalize(transformer, streamer.close)
    return streamer


__all__ = ["BlockStreamer", "BlockFile", "stream_blocks", "transformer_blocks", "write_block"]
