"""A module whose weights live in safetensors files on disk and visit the GPU one layer at a time.

Offload mode uses it for the Llama text encoder (8B parameters, 16 GB in bf16): it runs once per
job, for a few seconds, so keeping it in host RAM between jobs would cost 16 GB for nothing. Its
weights are written once per process, one file per layer, and then dropped from memory (the
parameters become meta tensors); while the encoder runs, each layer's file is read straight onto
the GPU before the layer's forward and dropped after it. The host holds no weights at all, only
the kernel's page cache, which it can reclaim.

Files go to `<root>/<pid>-<random>/`, removed when the module is garbage collected or the process
exits; directories left by a crashed process are removed by the next one (`remove_stale`).
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# Children smaller than this stay on the GPU (norms, rotary tables): not worth a file.
SMALL_BYTES = 16 * 1024**2


def _param_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def streaming_units(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers that stream: each item of a ModuleList child, every other child with weights."""
    units = []
    for name, child in module.named_children():
        if isinstance(child, nn.ModuleList):
            units.extend((f"{name}.{i}", item) for i, item in enumerate(child))
        elif _param_bytes(child) >= SMALL_BYTES:
            units.append((name, child))
    return units


def module_tensors(module: nn.Module, persistent_only: bool = False):
    """(owner module, attribute, tensor, is_param) for every parameter and buffer below `module`;
    with `persistent_only`, only what its state dict holds."""
    for mod in module.modules():
        for name, p in mod._parameters.items():
            if p is not None:
                yield mod, name, p, True
        for name, b in mod._buffers.items():
            if b is not None and not (persistent_only and name in mod._non_persistent_buffers_set):
                yield mod, name, b, False


def move_own_tensors(module: nn.Module, device) -> None:
    """Moves the parameters and buffers held by `module` itself (not its children) to `device`."""
    for p in module._parameters.values():
        if p is not None:
            p.data = p.data.to(device)
    for name, b in list(module._buffers.items()):
        if b is not None:
            module._buffers[name] = b.to(device)


def _to_meta(unit: nn.Module) -> None:
    """Drops the unit's weights; shapes and dtypes stay for the next load."""
    for mod, name, t, is_param in list(module_tensors(unit, persistent_only=True)):
        empty = torch.empty_like(t, device="meta")
        if is_param:
            mod._parameters[name] = nn.Parameter(empty, requires_grad=False)
        else:
            mod._buffers[name] = empty


def remove_stale(root: Path) -> None:
    """Deletes directories of processes that no longer run (crashes leave them behind)."""
    import psutil

    if not root.is_dir():
        return
    for entry in root.iterdir():
        pid = entry.name.split("-", 1)[0]
        if entry.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


@dataclass
class DiskStream:
    module: nn.Module
    device: torch.device
    folder: Path
    files: dict[str, Path] = field(default_factory=dict)
    bytes_on_disk: int = 0
    loads: int = 0  # layer loads so far (tests and logs)

    def _load(self, name: str, unit: nn.Module) -> None:
        from safetensors.torch import load_file

        tensors = load_file(self.files[name], device=str(self.device))
        unit.load_state_dict(tensors, strict=True, assign=True)
        self.loads += 1


def _reader_state(reader, prefix: str, keys, dtype) -> dict[str, torch.Tensor]:
    out = {}
    for key in keys:
        t = reader.read(f"{prefix}{key}")
        out[key] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return out


def stream_from_disk(
    module: nn.Module, device: torch.device | str, root: Path, reader=None, dtype: torch.dtype | None = None
) -> DiskStream:
    """Writes `module`'s layers to disk, frees them, and streams them onto `device` per forward.

    The module's small parts (embeddings under 16 MB, norms, non-persistent buffers) move to
    `device` and stay there. The module must not be moved with `.to()` afterwards.
    With a `reader` (`weight_storage.SafetensorsReader` of its checkpoint), `module` may be built
    without storage (meta): each layer is read from the checkpoint (cast to `dtype`) straight into
    its own file, so the whole model is never in memory.
    """
    from safetensors.torch import save_file

    device = torch.device(device)
    root = Path(root)
    remove_stale(root)
    folder = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    stream = DiskStream(module, device, folder)
    weakref.finalize(module, shutil.rmtree, str(folder), True)
    units = streaming_units(module)
    streamed = {id(u) for _, u in units}
    for index, (name, unit) in enumerate(units):
        # One layer at a time through host memory: the peak is one layer, not the model.
        if reader is not None:
            state = _reader_state(reader, f"{name}.", unit.state_dict().keys(), dtype)
        else:
            state = {key: t.detach().to("cpu").contiguous() for key, t in unit.state_dict().items()}
        path = folder / f"{index:03d}.safetensors"
        save_file(state, str(path))
        stream.files[name] = path
        stream.bytes_on_disk += path.stat().st_size
        del state
        _to_meta(unit)
        unit.register_forward_pre_hook(lambda m, args, _n=name: stream._load(_n, m))
        unit.register_forward_hook(lambda m, args, out: _to_meta(m))
    # What does not stream (small children, buffers of the root) lives on the device.
    for name, child in module.named_children():
        if id(child) not in streamed and not isinstance(child, nn.ModuleList):
            if reader is not None:
                keys = child.state_dict().keys()
                child.load_state_dict(_reader_state(reader, f"{name}.", keys, dtype), strict=True, assign=True)
            child.to(device)
    move_own_tensors(module, device)
    log.info(
        "%s: %d layers (%.1f GiB) stream from %s",
        type(module).__name__,
        len(units),
        stream.bytes_on_disk / 1024**3,
        folder,
    )
    return stream


def read_to_disk_stream(
    model_cls, source: str, subfolder: str | None, device, root: Path, dtype: torch.dtype, token: str | None = None
) -> nn.Module:
    """A transformers model built without storage whose layers go from its checkpoint to disk files.

    What `from_pretrained` then `stream_from_disk` give, without ever holding the model in RAM
    (the 8B text encoder would take 16 GB while loading).
    """
    from accelerate import init_empty_weights

    from backend.pipeline.framepack.weight_storage import SafetensorsReader, safetensors_files

    config = model_cls.config_class.from_pretrained(source, subfolder=subfolder, token=token or None)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # as from_pretrained builds it: buffers keep their own dtypes
    try:
        with init_empty_weights():
            model = model_cls(config)
    finally:
        torch.set_default_dtype(previous)
    reader = SafetensorsReader(safetensors_files(source, subfolder, token))
    model._studio_disk_stream = stream_from_disk(model.eval(), device, root, reader=reader, dtype=dtype)
    return model


__all__ = [
    "DiskStream",
    "module_tensors",
    "move_own_tensors",
    "stream_from_disk",
    "read_to_disk_stream",
    "streaming_units",
    "remove_stale",
]
