"""Transformer weights stored in 8 bits, computed in bf16: half the bytes to hold and to move.

Used by the fp8 memory mode (the 13B transformer fits a 24 GB card resident) and by offload mode
on machines short of host RAM (12 GiB of 8-bit weights in host memory instead of 24 GiB of bf16,
and half the bytes over PCIe every step).

Each linear weight row (output channel) gets its own scale, so that its largest value maps to the
format's largest one. Two formats: float8 e4m3 (what "fp8 storage" usually names; a plain cast
as in diffusers' layerwise casting would push typical weights into e4m3's subnormal range) and
int8 (W8A16: 255 evenly spaced levels; for bell-shaped weight rows its rounding error is about a
third of e4m3's, whose 3-bit mantissa costs up to 6% of every value). The forward dequantises the
weight to the compute dtype and calls the ordinary bf16 matmul: inside a compiled block the
dequantisation is one fused elementwise kernel, so the speed stays near bf16 (cf.
`accel.Fp8Linear`, which also quantises the activations and multiplies in fp8).

Not bit-identical to bf16: `benchmarks/framepack_gpu.py --storage-error` reports the transformer
output's error against bf16 for both formats.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn
INT8_MAX = 127.0
# Small layers (norm modulations of tiny width, the timestep MLP input) are not worth a scale row.
MIN_WEIGHT_NUMEL = 1 << 16


def quantize_rows(weight: torch.Tensor, fmt: str = "fp8") -> tuple[torch.Tensor, torch.Tensor]:
    """(8-bit weight, float32 scale of shape (out, 1)) with weight ≈ q.float() * scale."""
    w = weight.detach().float()
    amax = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    if fmt == "fp8":
        scale = amax / FP8_MAX
        return (w / scale).to(FP8), scale
    if fmt == "int8":
        scale = amax / INT8_MAX
        return torch.round(w / scale).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), scale
    raise ValueError(f"unknown 8-bit format {fmt!r}")


class StoredLinear8(nn.Linear):
    """An `nn.Linear` (so offloading hooks treat it as one) whose weight lives in 8 bits.

    `weight` holds the fp8 or int8 values, `weight_scale` one float32 scale per output channel;
    the bias stays in the compute dtype.
    """

    def __init__(
        self,
        weight_q: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: torch.Tensor | None,
        fmt: str,
        compute_dtype: torch.dtype,
    ) -> None:
        nn.Module.__init__(self)  # no nn.Linear init: it would allocate and initialise a weight
        self.out_features, self.in_features = weight_q.shape
        self.compute_dtype = compute_dtype
        self.fmt = fmt
        self.weight = nn.Parameter(weight_q, requires_grad=False)
        self.weight_scale = nn.Parameter(weight_scale, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(compute_dtype), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, fmt: str = "fp8") -> StoredLinear8:
        q, scale = quantize_rows(linear.weight, fmt)
        return cls(q, scale, linear.bias, fmt, linear.weight.dtype)

    def dequantized_weight(self) -> torch.Tensor:
        return (self.weight.float() * self.weight_scale).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, storage={self.fmt}"


def store_linears_8bit(
    module: nn.Module,
    fmt: str = "fp8",
    work_device: torch.device | str | None = None,
    min_numel: int = MIN_WEIGHT_NUMEL,
) -> tuple[int, int]:
    """Replaces the large `nn.Linear` layers of `module` with `StoredLinear8`, in place.

    Each layer is quantised on `work_device` (a GPU does 13B weights in seconds; a CPU takes
    minutes) and the result goes back to where the layer was, so peak memory is the model plus one
    layer. Returns (layers converted, bytes saved).
    """
    count = saved = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child.weight.numel() < min_numel:
                continue
            home = child.weight.device
            before = child.weight.numel() * child.weight.element_size()
            if work_device is not None:
                child.to(work_device)
            stored = StoredLinear8.from_linear(child, fmt).to(home)
            setattr(parent, name, stored)
            del child
            count += 1
            saved += before - stored.weight.numel() - stored.weight_scale.numel() * 4
    return count, saved


def safetensors_files(source: str, subfolder: str | None, token: str | None = None) -> list[Path]:
    """The weight files of one component: a local folder, or a Hugging Face repo (through its cache)."""
    local = Path(source).expanduser()
    if local.is_dir():
        folder = local / subfolder if subfolder else local
    else:
        from huggingface_hub import snapshot_download

        pattern = f"{subfolder}/*" if subfolder else "*"
        root = Path(snapshot_download(source, allow_patterns=[pattern], token=token or None))
        folder = root / subfolder if subfolder else root
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    return files


_ST_DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


class SafetensorsReader:
    """Reads a checkpoint's tensors one at a time with plain file reads.

    `safe_open` maps whole files, and every page it has read counts in the process's resident
    memory until the file is closed (10 GB shards: 10 GB more RSS while loading). Plain reads
    leave those pages in the kernel's reclaimable page cache, so loading holds one tensor at a time.
    """

    def __init__(self, files: list[Path]) -> None:
        import json
        import struct

        self.files = [Path(f) for f in files]
        self.entries: dict[str, tuple[Path, torch.dtype, list[int], int, int]] = {}
        for path in files:
            with open(path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(size))
            for key, info in header.items():
                if key != "__metadata__":
                    start, end = info["data_offsets"]
                    self.entries[key] = (path, _ST_DTYPES[info["dtype"]], info["shape"], 8 + size + start, end - start)

    def keys(self) -> list[str]:
        return list(self.entries)

    def read(self, key: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The tensor `key`; a floating one cast to `dtype` (if given) a piece at a time, so a large
        fp32 tensor read for bf16 (UMT5's 1 B-parameter embedding) never is whole in fp32."""
        path, stored, shape, offset, nbytes = self.entries[key]
        if dtype is None or dtype == stored or not stored.is_floating_point:
            buf = torch.empty(nbytes, dtype=torch.uint8)
            _read_into(path, offset, buf)
            return buf.view(stored).reshape(shape)
        out = torch.empty(shape, dtype=dtype)
        flat, size = out.view(-1), torch.empty((), dtype=stored).element_size()
        per_piece = max(1, _CAST_PIECE_BYTES // size)
        piece = torch.empty(min(per_piece, flat.numel()) * size, dtype=torch.uint8)
        for start in range(0, flat.numel(), per_piece):
            count = min(per_piece, flat.numel() - start)
            _read_into(path, offset + start * size, piece[: count * size])
            flat[start : start + count] = piece[: count * size].view(stored)
        return out


_CAST_PIECE_BYTES = 64 * 2**20


def _read_into(path: Path, offset: int, buf: torch.Tensor) -> None:
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        view, done = memoryview(buf.numpy()), 0
        while done < buf.numel():
            got = f.readinto(view[done:])
            if not got:
                raise OSError(f"{path} ends before its tensor does")
            done += got


def _unit_of(key: str, unit_lists: tuple[str, ...]) -> str | None:
    """'transformer_blocks.3' for 'transformer_blocks.3.attn.to_q.weight' (a block's keys)."""
    head, _, rest = key.partition(".")
    if head in unit_lists:
        index = rest.partition(".")[0]
        if index.isdigit():
            return f"{head}.{index}"
    return None


def load_model_8bit(
    cls,
    source: str,
    subfolder: str | None,
    fmt: str | None,
    dtype: torch.dtype,
    work_device: torch.device | str | None = None,
    token: str | None = None,
    min_numel: int = MIN_WEIGHT_NUMEL,
    place_unit=None,
    unit_lists: tuple[str, ...] = ("transformer_blocks", "single_transformer_blocks"),
):
    """Builds a diffusers model from its safetensors files with its large linears stored in 8 bits
    (`fmt` None: as they are, in `dtype`).

    `from_pretrained` followed by `store_linears_8bit` would first hold the whole bf16 model in host
    RAM (24 GiB for FramePack's transformer); here the model is created without storage and each
    tensor is read, quantised if it is a large linear weight, and kept, so the host peak is the
    8-bit model plus one tensor. With `place_unit(name, module)`, each block (a child of the
    `unit_lists` ModuleLists) is handed over as soon as its last tensor is read, to move to the GPU
    or to disk: the host then holds only the blocks that are to stay in RAM.
    """
    from accelerate import init_empty_weights
    from accelerate.utils import set_module_tensor_to_device

    config = cls.load_config(source, subfolder=subfolder, token=token or None)
    with init_empty_weights():
        model = cls.from_config(config)
    targets = (
        {}
        if fmt is None
        else {
            f"{name}.weight": name
            for name, mod in model.named_modules()
            if type(mod) is nn.Linear and mod.weight.numel() >= min_numel
        }
    )
    reader = SafetensorsReader(safetensors_files(source, subfolder, token))
    keys = reader.keys()
    units = {k: _unit_of(k, unit_lists) for k in keys}
    # Each block's keys together, so that it is complete (and handed over) as early as possible.
    keys.sort(key=lambda k: (units[k] is not None, units[k] or "", k))
    last_of_unit = {units[k]: k for k in keys if units[k] is not None}
    for key in keys:
        tensor = reader.read(key)
        if key in targets:
            parent_name, _, attr = targets[key].rpartition(".")
            parent = model.get_submodule(parent_name)
            linear = getattr(parent, attr)
            # From the compute dtype, as `store_linears_8bit` does: either path, the same model.
            weight = tensor.to(dtype) if work_device is None else tensor.to(work_device, dtype)
            q, scale = quantize_rows(weight, fmt)
            # A bias not read yet is still meta here; it is filled in when its key comes.
            setattr(parent, attr, StoredLinear8(q.cpu(), scale.cpu(), linear.bias, fmt, dtype))
        else:
            # An explicit dtype: without it the value is cast to the meta tensor's (float32).
            set_module_tensor_to_device(
                model, key, "cpu", value=tensor, dtype=dtype if tensor.is_floating_point() else None
            )
        del tensor
        unit = units[key]
        if place_unit is not None and unit is not None and last_of_unit[unit] == key:
            module = model.get_submodule(unit)
            missing = [n for n, p in list(module.named_parameters()) + list(module.named_buffers()) if p.is_meta]
            if missing:
                raise ValueError(f"{source}/{subfolder or ''}: {unit} lacks weights in the checkpoint: {missing[:5]}")
            place_unit(unit, module)
    missing = [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if missing:
        raise ValueError(f"{source}/{subfolder or ''}: weights missing from the checkpoint: {missing[:5]}")
    return model.eval()


__all__ = [
    "StoredLinear8",
    "SafetensorsReader",
    "load_model_8bit",
    "safetensors_files",
    "quantize_rows",
    "store_linears_8bit",
    "FP8_MAX",
]
