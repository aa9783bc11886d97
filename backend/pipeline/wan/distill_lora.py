"""The fast mode's distillation LoRA on Wan's transformer(s), switchable per job. Wan 2.2 A14B has
one LoRA per expert: `attach` is called once per (transformer, file), one switch turns all on.

The published LightX2V file is read and its keys converted to diffusers' names by diffusers itself
(`WanLoraLoaderMixin.lora_state_dict`: `diffusion_model.blocks.N.self_attn.q.lora_down.weight` →
`transformer.blocks.N.attn1.to_q.lora_A.weight`, `.diff_b` → `lora_B.bias`, alpha folded in, the
zeroed norm `.diff` keys dropped). Applying it is `load_lora_weights`' job when the PEFT package is
installed; it stays a hook of its own (the user's LoRAs go through PEFT, `pipeline/loras.py`) so the
fast mode is one flag per job beside them, applied the way PEFT's LoRA linear does at scale 1 (diffusers loads these files with alpha = rank):
y = W x + b + B (A x) + bias_B. They are forward hooks, not fused weights, so a full-quality job
after a fast one runs the untouched weights (fusing and unfusing bf16 weights drifts).
The A/B tensors are registered as buffers of their layer before the pipeline is placed, so
diffusers' offload hooks move them with the layer.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = "transformer."


class DistillLora:
    def __init__(self) -> None:
        self.enabled = False
        self.layers = 0
        self._handles: list = []

    def attach(self, transformer, path: Path) -> int:
        """Reads `path`, hooks every layer of `transformer` it names; returns the number of layers
        (`self.layers` counts every attached transformer's)."""
        from diffusers.loaders import WanLoraLoaderMixin

        state = WanLoraLoaderMixin.lora_state_dict(str(path))
        pairs: dict[str, dict] = {}
        for key, tensor in state.items():
            if not key.startswith(PREFIX):
                continue
            name, _, part = key[len(PREFIX) :].rpartition(".lora_")
            pairs.setdefault(name, {})[part] = tensor
        modules = dict(transformer.named_modules())
        unknown = sorted(n for n in pairs if n not in modules)
        if unknown:
            raise ValueError(f"LoRA {path.name} names layers the transformer lacks: {', '.join(unknown[:5])}")
        for name, parts in pairs.items():
            self._hook(modules[name], parts)
        self.layers += len(pairs)
        return len(pairs)

    def _hook(self, linear, parts: dict) -> None:
        # A transformer built without weights (its layers go to disk from the checkpoint): the
        # buffers start on the host and travel with the layer's file.
        device = "cpu" if linear.weight.is_meta else linear.weight.device
        dtype = getattr(linear, "compute_dtype", linear.weight.dtype)  # an 8-bit layer computes in bf16
        linear.register_buffer("studio_lora_A", parts["A.weight"].to(device, dtype), persistent=False)
        linear.register_buffer("studio_lora_B", parts["B.weight"].to(device, dtype), persistent=False)
        bias = parts.get("B.bias")
        if bias is not None:
            linear.register_buffer("studio_lora_bias", bias.to(device, dtype), persistent=False)

        def forward_hook(module, args, output):
            if not self.enabled:
                return output
            x = args[0]
            delta = (x.to(module.studio_lora_A.dtype) @ module.studio_lora_A.T) @ module.studio_lora_B.T
            if getattr(module, "studio_lora_bias", None) is not None:
                delta = delta + module.studio_lora_bias
            return output + delta.to(output.dtype)

        self._handles.append(linear.register_forward_hook(forward_hook))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.layers = 0
        self.enabled = False
