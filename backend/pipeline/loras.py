"""User LoRAs on a loaded FramePack or Wan pipeline, switched per take without touching the base weights.

Reading and key conversion are diffusers' own: `pipe.load_lora_weights(file, adapter_name=…)`
(`HunyuanVideoLoraLoaderMixin` on FramePack's pipeline, `WanLoraLoaderMixin` on Wan's), which
converts ComfyUI/LightX2V, musubi and original-HunyuanVideo keys itself and injects PEFT LoRA
layers beside the base linears. One addition (`kohya_hunyuan_to_original`): diffusers has no
converter for kohya-ss / musubi-tuner HunyuanVideo files (`lora_unet_double_blocks_0_img_attn_qkv.
lora_down.weight` + `.alpha`, what FramePack-Studio loads), so their names are rewritten to the
original HunyuanVideo layout diffusers does convert, with alpha/rank folded into the weights the
way diffusers folds it for musubi's Wan files.

Why unfused (the low-rank branch kept beside each linear) rather than fused into the weights:
- removal is exact: with the adapters disabled a PEFT layer returns `base_layer(x)`, the very
  weights a job without LoRAs uses (fusing and unfusing bf16 weights drifts);
- a switch between jobs is `set_adapters` on adapters already loaded (a dict lookup per layer), not
  a rewrite of 13 B weights; a LoRA is read once and kept (up to `KEEP` of them);
- it works for every storage the base layer has: 8-bit `StoredLinear8` layers keep their 8 bits
  and `accel.Fp8Linear` (STUDIO_FP8_MATMUL) its FP8 matmul (PEFT reads their `compute_dtype` for
  the LoRA's dtype), and blocks streamed from RAM or disk
  keep streaming only their own weights while the small LoRA tensors stay on the compute device.
The cost is one extra rank-r matmul pair per linear per step.

With compiled blocks (resident on a GPU) the branch costs more: PEFT's layers are modules the
compiled blocks were not compiled for, so a LoRA job runs the blocks eagerly (measured on an H100:
1.44x the step of a job without LoRA). There, when every layer a LoRA touches is a plain float
linear and host RAM holds a copy of those weights, the LoRAs are **fused** instead (`use(…, compiled=True)`):
their weights are copied to host RAM, diffusers' `fuse_lora` merges the chosen adapters (PEFT's
merge, in order, at their weights), `unload_lora_weights` takes PEFT's layers out again, and the
job runs the very modules the blocks were compiled for, at the step time of a job without LoRA. The
next job with other LoRAs, or none, first copies the kept weights back: bit for bit the weights
before (no unfuse by subtraction, which drifts in bf16). A switch then reads and merges the files
again (the adapters are not kept loaded).

Wan 2.2 A14B has two experts (high noise, then low noise): a chosen LoRA goes onto both, with the
same weight, as one file applied to "the model" is expected to act over the whole clip.

Nothing is half-applied: a LoRA that fails to load is deleted again (whatever PEFT injected for
it), the adapters are disabled, and the job fails with a sentence naming the file.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from pathlib import Path

from backend.contracts.errors import StudioError

log = logging.getLogger(__name__)

KEEP = 8  # LoRAs kept loaded for quick switching; the least recently used goes first

KOHYA_HV = re.compile(r"^lora_unet_(double_blocks|single_blocks)_(\d+)_(.+)$")
# musubi's module names with their inner dots put back (the rest keep their underscores)
KOHYA_MODULES = {
    "img_mod_linear": "img_mod.linear",
    "txt_mod_linear": "txt_mod.linear",
    "img_mlp_fc1": "img_mlp.fc1",
    "img_mlp_fc2": "img_mlp.fc2",
    "txt_mlp_fc1": "txt_mlp.fc1",
    "txt_mlp_fc2": "txt_mlp.fc2",
    "modulation_linear": "modulation.linear",
}


class LoraFailed(StudioError, RuntimeError):
    """A chosen LoRA could not be applied at run time (changed on disk, or refused by diffusers)."""


def kohya_hunyuan_to_original(state: dict) -> dict:
    """kohya/musubi HunyuanVideo LoRA keys → original HunyuanVideo keys (`diffusion_model.
    double_blocks.0.img_attn_qkv.lora_A.weight`) that diffusers' `_convert_hunyuan_video_lora_to_
    diffusers` takes; `alpha / rank` folded into the A and B weights (split as diffusers splits it)."""
    out = {}
    for key, tensor in state.items():
        if key.endswith(".alpha"):
            continue
        stem, _, part = key.partition(".")
        match = KOHYA_HV.match(stem)
        if match is None:
            raise ValueError(f"not a kohya HunyuanVideo key: {key}")
        kind, index, module = match.groups()
        module = KOHYA_MODULES.get(module, module)
        name = f"diffusion_model.{kind}.{index}.{module}"
        if part == "lora_down.weight":
            alpha = state.get(f"{stem}.alpha")
            scale = float(alpha) / tensor.shape[0] if alpha is not None else 1.0
            down, up = scale, 1.0
            while down * 2 < up:  # diffusers' split: neither factor far from 1
                down *= 2
                up /= 2
            out[f"{name}.lora_A.weight"] = tensor * down
            up_key = f"{stem}.lora_up.weight"
            out[f"{name}.lora_B.weight"] = state[up_key] * up
        elif part == "lora_up.weight":
            continue  # written with its down matrix
        else:
            raise ValueError(f"unexpected kohya LoRA part: {key}")
    return out


def read_lora(path: Path):
    """What `load_lora_weights` is given for `path`: the file itself, or for a kohya HunyuanVideo
    LoRA its keys in the original layout."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        if not any(k.startswith("lora_unet_") and ("double_blocks" in k or "single_blocks" in k) for k in keys):
            return str(path)
        state = {k: f.get_tensor(k) for k in keys}
    return kohya_hunyuan_to_original(state)


def _adapter_name(name: str, stamp: tuple) -> str:
    import hashlib

    digest = hashlib.sha1(f"{name}|{stamp}".encode()).hexdigest()[:12]
    return f"studio_{digest}"


def transformer_names(pipe) -> list[str]:
    """ "transformer", and "transformer_2" when the pipeline has Wan 2.2's second expert."""
    return [name for name in ("transformer", "transformer_2") if getattr(pipe, name, None) is not None]


def transformers(pipe) -> list:
    """The pipeline's transformer(s), in `transformer_names` order."""
    return [getattr(pipe, name) for name in transformer_names(pipe)]


class LoraSwitch:
    """The LoRAs loaded on one pipeline and which of them a take uses.

    `use(pipe, choices, compiled)` before each take: `choices` is the take's `[{"name", "weight"}]`
    (empty = none); the adapters already loaded are switched, new files are read, and with compiled
    blocks they are merged into the weights (see the module doc). `switch_seconds` is the time the
    last `use` took (reported in the job log and measured by the benchmark)."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        self.folder = Path(folder)
        self.device = device
        self.loaded: OrderedDict[str, str] = OrderedDict()  # adapter name → LoRA file name
        self.active: list[tuple[str, float]] = []
        self.fused: list[tuple[str, float]] = []  # the LoRAs merged into the weights now
        self._kept: dict = {}  # weight or bias tensor → its value before the merge (host RAM)
        self.switch_seconds = 0.0

    def use(self, pipe, choices: list[dict] | None, compiled: bool = False) -> bool:
        """Applies this take's LoRAs; True when PEFT's layers carry them through the job (a branch
        beside the base layers: compiled blocks must then run eagerly). With `compiled` blocks they
        are fused into the weights where possible, and a job with no branch finds no PEFT layer left
        in the model (`unload`), so the blocks meet the modules they were compiled for."""
        began = time.perf_counter()
        try:
            branch = self._use(pipe, list(choices or []), compiled)
            if compiled and not branch:
                self.unload(pipe)
            return branch
        finally:
            self.switch_seconds = time.perf_counter() - began

    def _use(self, pipe, choices: list[dict], fuse: bool) -> bool:
        wanted = [(c["name"], float(c.get("weight", 1.0))) for c in choices]
        if self.fused and wanted == self.fused:
            return False
        self._restore()
        if not wanted:
            if self.loaded:
                pipe.disable_lora()
            self.active = []
            return False
        names = [self._load(pipe, name) for name, _ in wanted]
        pipe.set_adapters(names, [w for _, w in wanted])
        pipe.enable_lora()
        self.active = wanted
        if fuse and self._fuse(pipe, names):
            self.fused = wanted
            return False
        return True

    def _fuse(self, pipe, names: list[str]) -> bool:
        """Merges the active adapters into the weights, keeping the weights' values before; False
        (nothing changed) when a touched layer is not a plain float linear (8-bit storage, FP8
        matmuls) or host RAM cannot hold the copy."""
        import psutil
        import torch
        from peft.tuners.tuners_utils import BaseTunerLayer

        touched = []
        for transformer in transformers(pipe):
            for module in transformer.modules():
                if isinstance(module, BaseTunerLayer) and any(n in module.lora_A for n in names):
                    base = module.get_base_layer()
                    if type(base) is not torch.nn.Linear or not base.weight.dtype.is_floating_point:
                        return False
                    touched.append(base.weight)
                    if base.bias is not None:
                        touched.append(base.bias)
        size = sum(t.numel() * t.element_size() for t in touched)
        if size > 0.5 * psutil.virtual_memory().available:
            log.info("LoRAs kept beside the layers: %.1f GB of weights to keep, too little free RAM", size / 1e9)
            return False
        self._kept = {t: t.detach().to("cpu", copy=True) for t in touched}
        try:
            pipe.fuse_lora(components=transformer_names(pipe), adapter_names=names)
        except Exception as exc:  # nothing half-merged stays: the kept weights go back
            self._restore()
            raise LoraFailed("lora_failed", name=", ".join(n for n, _ in self.active), why=str(exc)[:200]) from exc
        finally:
            pipe.unload_lora_weights()  # PEFT's layers out; merged weights stay (or were put back)
            self.loaded.clear()
        return True

    def _restore(self) -> None:
        """The weights as they were before the fused LoRAs, copied back bit for bit."""
        for tensor, before in self._kept.items():
            tensor.data.copy_(before)
        self._kept = {}
        self.fused = []

    def unload(self, pipe) -> None:
        """Takes every LoRA layer out of the model (the next use reads its files again).

        Compiled blocks need it: torch.compile guards on the modules inside a block, so PEFT's
        layers and each switch of their adapters would recompile, until dynamo's limit (8 a block
        kind) leaves the blocks eager for good (seen on an H100). Without LoRA layers, a job meets
        the very modules the blocks were compiled for."""
        if self.loaded or getattr(pipe.transformer, "peft_config", None):
            pipe.unload_lora_weights()
        self.loaded.clear()
        self.active = []

    def _load(self, pipe, name: str) -> str:
        from backend.utils.lora_files import LoraProblem, resolve

        try:
            path = resolve(self.folder, name)
            stat = path.stat()
        except (LoraProblem, OSError):
            self._disable(pipe)
            raise LoraFailed("lora_missing", name=name) from None
        adapter = _adapter_name(name, (stat.st_size, stat.st_mtime_ns))
        if adapter in self.loaded:
            self.loaded.move_to_end(adapter)
            return adapter
        for old in [a for a, n in self.loaded.items() if n == name]:  # the file changed on disk
            self._delete(pipe, old)
        while len(self.loaded) >= KEEP:
            self._delete(pipe, next(iter(self.loaded)))
        try:
            pipe.load_lora_weights(read_lora(path), adapter_name=adapter)
            if getattr(pipe, "transformer_2", None) is not None:
                # Wan 2.2's low-noise expert: diffusers loads into one transformer per call.
                pipe.load_lora_weights(read_lora(path), adapter_name=adapter, load_into_transformer_2=True)
        except Exception as exc:
            self._delete(pipe, adapter)
            self._disable(pipe)
            log.warning("LoRA %s could not be applied: %s", name, exc)
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise LoraFailed("lora_failed", name=name, why=why) from exc
        self.loaded[adapter] = name
        for transformer in transformers(pipe):
            self._onto_device(transformer)
        return adapter

    def _onto_device(self, transformer) -> None:
        """The LoRA tensors on the compute device: PEFT put them where the base weight is, which
        for a block streamed from RAM or disk is host memory (a placeholder between forwards)."""
        if self.device == "cpu":
            return
        for name, module in transformer.named_modules():
            if name.endswith(("lora_A", "lora_B")):
                module.to(self.device)

    def _delete(self, pipe, adapter: str) -> None:
        try:
            pipe.delete_adapters(adapter)
        except Exception:  # nothing of it was injected
            log.debug("no adapter %s to delete", adapter)
        self.loaded.pop(adapter, None)

    def _disable(self, pipe) -> None:
        self.active = []
        if self.loaded:
            pipe.disable_lora()
        else:
            for transformer in transformers(pipe):
                self._strip(transformer)

    @staticmethod
    def _strip(transformer) -> None:
        """No adapter is left: whatever PEFT wrapped goes back to the plain layers."""
        if getattr(transformer, "peft_config", None):
            try:
                transformer.unload_lora()
            except Exception:
                log.debug("no LoRA layers to unload")
