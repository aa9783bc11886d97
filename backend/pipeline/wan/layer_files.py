"""Wan's transformer layers as diffusers' group-offload files on disk (the `group_offload_disk`
placement), written straight from the checkpoint.

`from_pretrained` followed by `enable_group_offload(offload_to_disk_path=…)` first holds the whole
transformer in host RAM: 33 GB in bf16, cast from the hub's fp32 shards, more than the 32 GB
machines this placement is for. Here the transformer is built without storage (`empty_transformer`),
diffusers' own group offload is applied to it over placeholder files (diffusers writes no layer file
that already exists), and each group's file is then written from the checkpoint one tensor at a
time, under the group's own key map (`ModuleGroup.tensor_to_key`), so diffusers reads back what it
would have written itself. The host holds one tensor at a time, and the casts are `from_pretrained`'s
(`dtype`, float32 for the model's `_keep_in_fp32_modules`).

What this leans on in diffusers beyond its public API, checked by the tests on every run: a group's
file is `group_<_compute_group_hash(group id)>.safetensors`, an existing file is not rewritten, and
the group hook is reachable as `module._diffusers_hook.get_hook("group_offloading").group`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

GROUP_HOOK = "group_offloading"
LAZY_GROUP_ID = "lazy_leafs"  # the root's prefetch group under a stream (no tensors)


def file_of(folder: Path, group_id: str) -> Path:
    from diffusers.hooks.group_offloading import _compute_group_hash

    return folder / f"group_{_compute_group_hash(group_id)}.safetensors"


def empty_transformer(folder: Path, subfolder: str, dtype):
    """The transformer in `folder/subfolder` built as `from_pretrained(dtype=…)` builds it, without
    reading a weight: parameters on the meta device (float32 where the model keeps them so),
    buffers (RoPE tables) computed for real."""
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
    return model.eval()


def keeps_fp32(model, name: str) -> bool:
    """`from_pretrained`'s rule: a tensor under one of `_keep_in_fp32_modules` stays float32."""
    keep = model._keep_in_fp32_modules or []
    return any(module in name.split(".") for module in keep)


def reserve(module, folder: Path) -> None:
    """Placeholders before diffusers' group offload is applied to a transformer built without
    weights: a file for every group diffusers may form (one per module name, and the prefetch
    group), so that applying it writes nothing, and host storage for every meta parameter (which
    diffusers swaps for its own placeholder; never touched, so it costs no resident memory)."""
    import torch

    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None and param.is_meta:
                sub._parameters[name] = torch.nn.Parameter(
                    torch.empty_like(param, device="cpu"), requires_grad=param.requires_grad
                )
    folder.mkdir(parents=True, exist_ok=True)
    for name in [name for name, _ in module.named_modules()] + [LAZY_GROUP_ID]:
        path = file_of(folder, name)
        if not path.exists():
            path.touch()


def own_tensors(module) -> dict[str, object]:
    """The tensors `module` already holds for real (buffers such as RoPE tables, the fast mode's
    LoRA buffers), by name: taken before the group offload swaps their storage for placeholders."""
    out = {}
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if not tensor.is_meta:
            out[name] = tensor.data
    return out


def write_from_checkpoint(module, folder: Path, reader, dtype, own: dict) -> int:
    """Writes each group's file from `reader` (a `SafetensorsReader` of the checkpoint; `own` for
    tensors it lacks), after diffusers' group offload was applied to `module` over `reserve`d
    placeholders; removes the placeholders no group claimed. Returns the bytes written."""
    import torch
    from safetensors.torch import save_file

    names: dict[int, str] = {}
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        names.setdefault(id(tensor), name)
    in_checkpoint = set(reader.keys())
    written, claimed = 0, set()
    for group in groups_of(module):
        path = Path(group.safetensors_file_path)
        state = {}
        for tensor, key in group.tensor_to_key.items():
            name = names.get(id(tensor))
            if name in in_checkpoint:
                value = reader.read(name)
                if value.is_floating_point() and dtype is not None:
                    value = value.to(torch.float32 if keeps_fp32(module, name) else dtype)
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
        written += path.stat().st_size
        claimed.add(path.name)
        del state
    for path in folder.glob("group_*.safetensors"):
        if path.name not in claimed and path.stat().st_size == 0:
            path.unlink()
    return written


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
        try:
            os.link(source, alias)
        except OSError:
            shutil.copyfile(source, alias)
        added += 1
    return added
