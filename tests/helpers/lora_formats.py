"""LoRA files in the key layouts users have, random values in a transformer's real shapes.

The shapes are read from the model itself (each named linear's in/out features), so the same
writers serve the tiny test models and full-size ones. Formats:
- FramePack (HunyuanVideo): diffusers/PEFT (`transformer.transformer_blocks.0.attn.to_q.lora_A.
  weight`), kohya-ss / musubi-tuner (`lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight` +
  `.alpha`, what FramePack-Studio loads);
- Wan: diffusers/PEFT (`transformer.blocks.0.attn1.to_q.lora_A.weight`), ComfyUI/LightX2V
  (`diffusion_model.blocks.0.self_attn.q.lora_down.weight`, `tiny_wan.lightx2v_style_lora`),
  musubi-tuner (`lora_unet_blocks_0_self_attn_q.lora_down.weight` + `.alpha`).
"""

from __future__ import annotations

from pathlib import Path


def _save(sd: dict, path: Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def _rnd(g, *shape, scale=0.3):
    import torch

    return torch.randn(*shape, generator=g) * scale


def diffusers_lora(transformer, modules: list[str], path: Path, rank: int = 2, seed: int = 1) -> Path:
    """PEFT/diffusers keys for the named linears of `transformer` (`transformer.` + module name)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    named = dict(transformer.named_modules())
    sd = {}
    for name in modules:
        lin = named[name]
        sd[f"transformer.{name}.lora_A.weight"] = _rnd(g, rank, lin.in_features)
        sd[f"transformer.{name}.lora_B.weight"] = _rnd(g, lin.out_features, rank)
    return _save(sd, path)


FRAMEPACK_DIFFUSERS_MODULES = [
    "transformer_blocks.0.attn.to_q",
    "transformer_blocks.0.attn.to_v",
    "transformer_blocks.0.attn.add_k_proj",
    "transformer_blocks.0.ff.net.0.proj",
    "single_transformer_blocks.0.attn.to_q",
    "single_transformer_blocks.0.proj_out",
]
WAN_DIFFUSERS_MODULES = [
    "blocks.0.attn1.to_q",
    "blocks.0.attn1.to_out.0",
    "blocks.1.attn2.to_k",
    "blocks.1.ffn.net.0.proj",
]


def kohya_hunyuan_lora(transformer, path: Path, rank: int = 2, alpha: float = 1.0, seed: int = 2) -> Path:
    """musubi-tuner's HunyuanVideo LoRA keys for every double and single block of `transformer`
    (a diffusers HunyuanVideo/FramePack transformer; widths from its config)."""
    import torch

    c = transformer.config
    inner = c.num_attention_heads * c.attention_head_dim
    mlp = int(inner * c.mlp_ratio)
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "img_attn_qkv": (3 * inner, inner),
        "img_attn_proj": (inner, inner),
        "img_mlp_fc1": (mlp, inner),
        "img_mlp_fc2": (inner, mlp),
        "img_mod_linear": (6 * inner, inner),
        "txt_attn_qkv": (3 * inner, inner),
        "txt_mlp_fc2": (inner, mlp),
    }
    # No `linear1`: diffusers' converter splits it at HunyuanVideo's width (3072), which only the
    # full-size model has.
    single = {"linear2": (inner, inner + mlp), "modulation_linear": (3 * inner, inner)}
    if inner == 3072:
        single["linear1"] = (3 * inner + mlp, inner)
    sd = {}
    for kind, count, table in (("double", c.num_layers, shapes), ("single", c.num_single_layers, single)):
        for i in range(count):
            for module, (out_f, in_f) in table.items():
                _kohya_pair(sd, f"lora_unet_{kind}_blocks_{i}_{module}", g, out_f, in_f, rank, alpha)
    return _save(sd, path)


def _kohya_pair(sd: dict, stem: str, g, out_f: int, in_f: int, rank: int, alpha: float) -> None:
    """One kohya-style layer (musubi-tuner writes the same for HunyuanVideo and Wan): down, up, alpha."""
    import torch

    sd[f"{stem}.lora_down.weight"] = _rnd(g, rank, in_f)
    sd[f"{stem}.lora_up.weight"] = _rnd(g, out_f, rank)
    sd[f"{stem}.alpha"] = torch.tensor(float(alpha))


def musubi_wan_lora(transformer, path: Path, rank: int = 2, alpha: float = 1.0, seed: int = 3) -> Path:
    """musubi-tuner's Wan LoRA keys (self/cross attention and FFN of every block, I2V `k_img`/`v_img`)."""
    import torch

    c = transformer.config
    inner = c.num_attention_heads * c.attention_head_dim
    g = torch.Generator().manual_seed(seed)
    shapes = {f"self_attn_{o}": (inner, inner) for o in "qkvo"}
    shapes.update({f"cross_attn_{o}": (inner, inner) for o in ("q", "k", "v", "o", "k_img", "v_img")})
    shapes.update({"ffn_0": (c.ffn_dim, inner), "ffn_2": (inner, c.ffn_dim)})
    sd = {}
    for i in range(c.num_layers):
        for module, (out_f, in_f) in shapes.items():
            _kohya_pair(sd, f"lora_unet_blocks_{i}_{module}", g, out_f, in_f, rank, alpha)
    return _save(sd, path)


def corrupt_copy(src: Path, dst: Path) -> Path:
    """`src` cut short: a header that promises more tensor bytes than the file holds."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: len(data) - 64])
    return dst
