"""Wan's transformer and UMT5 layers as diffusers' group-offload files on disk (the
`group_offload_disk` placement), written straight from the checkpoint.

`from_pretrained` followed by `enable_group_offload(offload_to_disk_path=…)` first holds the whole
transformer in host RAM: 33 GB in bf16, cast from the hub's fp32 shards, more than the 32 GB
machines this placement is for. Here the transformer is built without storage (`empty_transformer`;
UMT5 by `empty_text_encoder`), diffusers' own group offload is applied to it over placeholder files
(diffusers writes no layer file that already exists), and each group's file is then written from
the checkpoint one tensor at a time, under the group's own key map (`ModuleGroup.tensor_to_key`), so
diffusers reads back what it would have written itself. The host holds one tensor at a time, cast
to the dtype the built model gives it (`from_pretrained`'s rules). A module loaded whole gets its
files from its own tensors the same way: diffusers' writer is never used, since it writes a tied
weight (UMT5's embedding) after the first group holding it emptied it.

The files outlive the process: a folder whose manifest (`studio_layer_files.json`, written last)
matches this load — the checkpoint files' names, sizes and times, the model's config and layer
structure, the dtype and 8-bit format, diffusers' version, and a hash of the tensors the model
brings itself (RoPE tables, the fast mode's LoRA) — is read as it is, so a restart does not write
the transformer again; anything else, or a folder a crash left without its manifest, is
rewritten.

What this leans on in diffusers beyond its public API, checked by the tests on every run: a group's
file is `group_<_compute_group_hash(group id)>.safetensors`, an existing file is not rewritten, and
the group hook is reachable as `module._diffusers_hook.get_hook("group_offloading").group`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

GROUP_HOOK = "group_offloading"
MANIFEST = "studio_layer_files.json"
FORMAT = 1  # of the files this module writes; a change here rewrites every folder
LAZY_GROUP_ID = "lazy_leafs"  # the root's prefetch group under a stream (no tensors)


def file_of(folder: Path, group_id: str) -> Path:
    from diffusers.hooks.group_offloading import _compute_group_hash

    return folder / f"group_{_compute_group_hash(group_id)}.safetensors"


def empty_transformer(folder: Path, subfolder: str, dtype, storage_8bit: str | None = None):
    """The transformer in `folder/subfolder` built as `from_pretrained(dtype=…)` builds it, without
    reading a weight: parameters on the meta device (float32 where the model keeps them so),
    buffers (RoPE tables) computed for real. With `storage_8bit` ("int8"/"fp8") the blocks' large
    linears are `StoredLinear8`s, as `store_blocks_8bit` makes them from a loaded model."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel
    from diffusers.models.modeling_utils import no_init_weights

    config = WanTransformer3DModel.load_config(str(folder), subfolder=subfolder)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights(), init_empty_weights():
            model = WanTransformer3DModel.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    for name, param in model.named_parameters():
        if keeps_fp32(model, name):
            param.data = param.data.to(torch.float32)
    model.register_to_config(_name_or_path=str(folder))
    if storage_8bit:
        store_blocks_8bit(model, storage_8bit)
    return model.eval()


def empty_text_encoder(folder: Path, dtype, storage_8bit: str | None = None):
    """The pipeline's text encoder (UMT5, a transformers model) built as `from_pretrained(dtype=…)`
    builds it — transformers' own dtype rules and tied embedding — with every tensor on the meta
    device (`device_map="meta"`: no weight read into memory). With `storage_8bit` == "int8" its
    large linears are `StoredLinear8`s, as `wan_loading` stores a loaded UMT5's on this placement
    (fp8 is not offered: T5's feed-forward casts its input to `wo`'s dtype unless that is int8)."""
    import transformers

    from backend.pipeline.framepack import weight_storage

    library, cls_name = json.loads((folder / "model_index.json").read_text())["text_encoder"]
    if library != "transformers":
        raise ValueError(f"{folder.name}: the text encoder is {library}.{cls_name}, not a transformers model")
    model = getattr(transformers, cls_name).from_pretrained(
        str(folder / "text_encoder"), dtype=dtype, device_map="meta"
    )
    if storage_8bit == "int8":
        weight_storage.store_linears_8bit(model, "int8", min_numel=weight_storage.MIN_WEIGHT_NUMEL)
    return model.eval()


def store_blocks_8bit(model, fmt: str, work_device=None) -> int:
    """The large linears of the transformer's blocks (98 % of its weights) stored in 8 bits with a
    scale per output channel, computed in bf16 (`weight_storage.store_linears_8bit`, FramePack's
    offload storage): half the bytes on disk and over PCIe. On a meta model the `StoredLinear8`s
    are meta too (their values come from `write_from_checkpoint`). Returns the layers converted."""
    from backend.pipeline.framepack import weight_storage

    smallest = weight_storage.MIN_WEIGHT_NUMEL  # read now: the tests lower it for tiny models
    return sum(
        weight_storage.store_linears_8bit(block, fmt, work_device=work_device, min_numel=smallest)[0]
        for block in model.blocks
    )


def keeps_fp32(model, name: str) -> bool:
    """`from_pretrained`'s rule: a tensor under one of `_keep_in_fp32_modules` stays float32."""
    keep = model._keep_in_fp32_modules or []
    return any(module in name.split(".") for module in keep)


def reserve(module, folder: Path) -> None:
    """Placeholders before diffusers' group offload is applied to `module`: a file for every group
    diffusers may form (one per module name, and the prefetch group), so that applying it writes
    nothing, and, for a module built without weights, host storage for every meta parameter (which
    diffusers swaps for its own placeholder; never touched, so it costs no resident memory)."""
    import torch

    made: dict[int, torch.nn.Parameter] = {}  # by the meta parameter: a tied weight stays one
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and param.is_meta:
                if id(param) not in made:
                    made[id(param)] = torch.nn.Parameter(
                        torch.empty_like(param, device="cpu"), requires_grad=param.requires_grad
                    )
                sub._parameters[name] = made[id(param)]
    folder.mkdir(parents=True, exist_ok=True)
    for name in [name for name, _ in module.named_modules()] + [LAZY_GROUP_ID]:
        path = file_of(folder, name)
        if not path.exists():
            path.touch()


def own_tensors(module) -> dict[str, object]:
    """The tensors `module` already holds for real, by name (built without weights: buffers such
    as RoPE tables, the fast mode's LoRA buffers; loaded whole: all of them): taken before the
    group offload swaps their storage for placeholders."""
    out = {}
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if not tensor.is_meta:
            out[name] = tensor.data
    return out


def write_from_checkpoint(module, folder: Path, reader, own: dict) -> None:
    """Writes each group's file, after diffusers' group offload was applied to `module` over
    `reserve`d placeholders: each tensor from `reader` (a `SafetensorsReader` of the checkpoint,
    cast to the dtype the model gives it, as `from_pretrained` casts), else from `own` (the tensors
    the module held for real: its computed buffers; everything, for a module loaded whole, when
    `reader` is None). A tied weight (UMT5's embedding) is read under whichever of its names the
    checkpoint has; a group holding exactly another's tensors (that embedding's two leaf modules)
    gets a second name of that group's file. Removes the placeholders no group claimed."""
    from safetensors.torch import save_file

    from backend.pipeline.framepack.weight_storage import StoredLinear8, quantize_rows

    in_checkpoint = set(reader.keys()) if reader is not None else set()
    names: dict[int, str] = {}  # a tied weight by the name the checkpoint has it under
    every = list(module.named_parameters(remove_duplicate=False)) + list(module.named_buffers(remove_duplicate=False))
    for name, tensor in every:
        if id(tensor) not in names or name in in_checkpoint and names[id(tensor)] not in in_checkpoint:
            names[id(tensor)] = name
    stored = {name: m for name, m in module.named_modules() if isinstance(m, StoredLinear8)}
    written: dict[tuple, Path] = {}  # a group holding exactly another's tensors shares its file
    for group in groups_of(module):
        path = Path(group.safetensors_file_path)
        same = tuple(sorted((key, id(t)) for t, key in group.tensor_to_key.items()))
        if same in written:
            _link(written[same], path)
            continue
        written[same] = path
        state, quantized = {}, {}
        for tensor, key in group.tensor_to_key.items():
            name = names.get(id(tensor)) or ""
            owner, _, attr = name.rpartition(".")
            if owner in stored and attr in ("weight", "weight_scale") and f"{owner}.weight" in in_checkpoint:
                if owner not in quantized:
                    # From the compute dtype, as `store_linears_8bit` quantises a loaded model.
                    weight = reader.read(f"{owner}.weight", stored[owner].compute_dtype)
                    quantized[owner] = dict(zip(("weight", "weight_scale"), quantize_rows(weight, stored[owner].fmt)))
                value = quantized[owner][attr]
            elif name in in_checkpoint:
                value = reader.read(name, tensor.dtype if tensor.is_floating_point() else None)
            elif name in own:
                value = own[name]
            else:
                raise ValueError(f"{folder.name}: the checkpoint has no weight for {name or 'an unnamed tensor'}")
            if tuple(value.shape) != tuple(tensor.shape) or value.dtype != tensor.dtype:
                raise ValueError(
                    f"{folder.name}: {name} is {tuple(value.shape)} {value.dtype} in the checkpoint, "
                    f"the model wants {tuple(tensor.shape)} {tensor.dtype}"
                )
            state[key] = value.detach().to("cpu").contiguous()
        save_file(state, str(path))
        del state
    drop_placeholders(folder)


def drop_placeholders(folder: Path) -> None:
    """Removes the placeholder files no group claimed (still empty once the groups' are written)."""
    for path in folder.glob("group_*.safetensors"):
        if path.stat().st_size == 0:
            path.unlink()


class DiskLayers:
    """One component's layer folder around diffusers' `enable_group_offload(offload_to_disk_path=…)`:
    `before()`, diffusers' apply, `after()`. Diffusers is given a placeholder for every file and
    writes none; `after()` writes them (`write_from_checkpoint`). With a `checkpoint` ((reader,
    dtype); the component built without weights) the files come from the checkpoint, or are reused
    when the folder's manifest matches; without, from the module's own tensors, into an emptied
    folder (`reused` is then False). Not diffusers' own writer: it writes a tied weight (UMT5's
    embedding, two leaf modules) after the first group emptied it (seen: NaN frames)."""

    def __init__(self, module, folder: Path, checkpoint: tuple | None = None) -> None:
        self.module, self.folder, self.checkpoint = module, Path(folder), checkpoint
        self.reused = False
        self._own: dict = {}
        self._fingerprint: dict = {}

    def before(self) -> None:
        # Taken now: the group offload swaps the module's storage for placeholders.
        self._own = own_tensors(self.module)
        if self.checkpoint is not None:
            reader, dtype = self.checkpoint
            self._fingerprint = fingerprint(self.module, reader, dtype, self._own)
            self.reused = _manifest(self.folder) == self._fingerprint
        if not self.reused:
            # diffusers reads back any layer file that exists: older weights, the other Wan model's
            # or one a killed load left half-written would pass for these.
            shutil.rmtree(self.folder, ignore_errors=True)
        reserve(self.module, self.folder)

    def after(self) -> None:
        files = [Path(g.safetensors_file_path) for g in groups_of(self.module)]
        if self.reused and not all(p.exists() and p.stat().st_size > 0 for p in files):
            self.reused = False  # a file went missing since: write them all again
            (self.folder / MANIFEST).unlink(missing_ok=True)
        if self.reused:
            drop_placeholders(self.folder)
        else:
            reader = self.checkpoint[0] if self.checkpoint is not None else None
            write_from_checkpoint(self.module, self.folder, reader, self._own)
        alias_lora_base_layers(self.module, self.folder)
        if self.checkpoint is not None and not self.reused:
            tmp = self.folder / f"{MANIFEST}.tmp"
            tmp.write_text(json.dumps(self._fingerprint, indent=1))
            tmp.replace(self.folder / MANIFEST)  # last, and whole: a crash before it leaves none
        self._own = {}


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def fingerprint(module, reader, dtype, own: dict) -> dict:
    """What a layer folder must have been written from to be read as this load's (JSON-plain)."""
    import hashlib

    import diffusers
    import torch

    def digest(parts) -> str:
        h = hashlib.blake2b(digest_size=16)
        for part in parts:
            h.update(part if isinstance(part, bytes) else str(part).encode())
        return h.hexdigest()

    structure = [(name, type(m).__name__, getattr(m, "fmt", "")) for name, m in module.named_modules()] + [
        (name, p.dtype, tuple(p.shape)) for name, p in module.named_parameters()
    ]

    def own_parts():
        for name in sorted(own):
            t = own[name].detach().to("cpu").contiguous()
            yield from (name, t.dtype, tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes())

    return {
        "format": FORMAT,
        "diffusers": diffusers.__version__,
        "dtype": str(dtype),
        "config": digest([json.dumps(_config_dict(module), sort_keys=True, default=str)]),
        "structure": digest(structure),
        "checkpoint": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in reader.files],
        "own_tensors": digest(own_parts()),
    }


def _config_dict(module) -> dict:
    config = module.config  # a diffusers FrozenDict, or a transformers PretrainedConfig
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def groups_of(module) -> list:
    """diffusers' layer groups on `module` (each once), from its group-offload hooks."""
    seen, out = set(), []
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        hook = registry.get_hook(GROUP_HOOK) if registry is not None else None
        group = getattr(hook, "group", None)
        if group is not None and id(group) not in seen:
            seen.add(id(group))
            out.append(group)
    return out


def alias_lora_base_layers(transformer, folder: Path) -> int:
    """Gives each linear's layer file a second name, the one it has once PEFT wraps the linear.

    Loading a user LoRA makes diffusers re-apply the group offload (`load_lora_weights` →
    `_maybe_remove_and_reapply_group_offloading`); the wrapped linear is then the leaf module
    `<name>.base_layer`, a new group whose file diffusers writes from the layer's tensors — which,
    offloaded to disk, are uninitialised placeholders (seen: NaN frames). With the file already
    there under that name (keys by order: weight, bias — the same for the linear and its
    base_layer), nothing is written and the real weights are read back. Hard links (a copy where
    links fail); returns how many names were added."""
    import torch

    added = 0
    for name, module in transformer.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        source, alias = file_of(folder, name), file_of(folder, f"{name}.base_layer")
        if not source.exists() or alias.exists():
            continue
        _link(source, alias)
        added += 1
    return added


def _link(source: Path, name: Path) -> None:
    """`name` becomes a second name of `source`'s file (a copy where hard links fail)."""
    name.unlink(missing_ok=True)  # a placeholder
    try:
        os.link(source, name)
    except OSError:
        shutil.copyfile(source, name)
