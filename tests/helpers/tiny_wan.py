"""A tiny, randomly initialised Wan 2.1 first-last-frame pipeline of the real architecture.

Every component is the real class the published `Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers` repo
names (WanTransformer3DModel with an image branch, AutoencoderKLWan, UMT5EncoderModel,
CLIPVisionModelWithProjection, CLIPImageProcessor, UniPCMultistepScheduler in flow mode) with a
small config; it is written with `save_pretrained`, so the studio loads it through its real
models-folder path. Recipe facts (diffusers' own FLF test): the transformer's input is 16 noise +
4 mask + 16 condition channels = 36; `pos_embed_seq_len` is two images' CLIP tokens,
2 × (patches + 1); the pipeline reads CLIP's hidden_states[-2], so CLIP needs >= 2 layers.
`lightx2v_style_lora` writes a LoRA with the key names the published LightX2V I2V LoRAs use.

`build_tiny_wan22_pipeline` is Wan 2.2 I2V A14B's layout (what `Wan-AI/Wan2.2-I2V-A14B-Diffusers`'s
model_index.json names): two transformers without the CLIP image branch (`image_dim` and
`added_kv_proj_dim` None), `boundary_ratio` 0.9, no image encoder or processor.
"""

from __future__ import annotations

from pathlib import Path

INNER = 32  # heads × head dim (multiples of 16: the FP8 matmul test swaps these linears)
FFN = 32
LAYERS = 2
TEXT_DIM = 16
CLIP_HIDDEN = 4
CLIP_IMAGE = 4
WORDS = "a the cat dog walks runs turns camera slowly toward light smiles".split()


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(["<pad>", "</s>", "<unk>"] + WORDS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=512
    )


def build_tiny_pipeline(seed: int = 0):
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        UMT5Config,
        UMT5EncoderModel,
    )

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=32,
            d_model=TEXT_DIM,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
        )
    )
    transformer = _transformer(image=True)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=CLIP_HIDDEN,
            projection_dim=CLIP_HIDDEN,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=CLIP_IMAGE,
            intermediate_size=16,
            patch_size=1,
        )
    )
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    pipe = WanImageToVideoPipeline(
        tokenizer=_tokenizer(),
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=CLIPImageProcessor(crop_size=CLIP_IMAGE, size=CLIP_IMAGE),
        image_encoder=image_encoder,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


BOUNDARY_RATIO = 0.9  # Wan 2.2 I2V A14B's model_index.json value


def _transformer(image: bool):
    """The tiny transformer: Wan 2.1 FLF2V's with CLIP image tokens (their added K/V and position
    embedding for two images), or one of Wan 2.2 I2V A14B's experts (no image branch)."""
    from diffusers import WanTransformer3DModel

    image_branch = (
        dict(image_dim=CLIP_HIDDEN, added_kv_proj_dim=INNER, pos_embed_seq_len=2 * (CLIP_IMAGE * CLIP_IMAGE + 1))
        if image
        else {}
    )
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=INNER // 2,
        in_channels=36,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=FFN,
        num_layers=LAYERS,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        **image_branch,
    )


def build_tiny_wan22_pipeline(seed: int = 0):
    """Wan 2.2 I2V A14B's architecture, tiny: the high-noise expert `transformer` and the low-noise
    `transformer_2` (different random weights, so a frame shows which one ran), `boundary_ratio`."""
    import torch
    from diffusers import WanImageToVideoPipeline

    base = build_tiny_pipeline(seed)  # the VAE, text encoder, tokenizer and scheduler are shared
    torch.manual_seed(seed + 100)
    high = _transformer(image=False)
    torch.manual_seed(seed + 200)
    low = _transformer(image=False)
    pipe = WanImageToVideoPipeline(
        tokenizer=base.tokenizer,
        text_encoder=base.text_encoder,
        vae=base.vae,
        scheduler=base.scheduler,
        image_processor=None,
        image_encoder=None,
        transformer=high,
        transformer_2=low,
        boundary_ratio=BOUNDARY_RATIO,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_wan22_pipeline(directory: Path, seed: int = 0) -> Path:
    """Writes the tiny Wan 2.2 pipeline in diffusers layout (what `--only wan22` assembles)."""
    directory = Path(directory)
    if not (directory / "model_index.json").exists():
        build_tiny_wan22_pipeline(seed).save_pretrained(str(directory))
    return directory


def save_tiny_pipeline(directory: Path, seed: int = 0) -> Path:
    """Writes the tiny pipeline in diffusers layout (what the studio's Wan folder holds)."""
    directory = Path(directory)
    if not (directory / "model_index.json").exists():
        build_tiny_pipeline(seed).save_pretrained(str(directory))
    return directory


def lightx2v_style_lora(
    path: Path, rank: int = 4, seed: int = 1, scale: float = 0.5, image_branch: bool = True
) -> Path:
    """A LoRA file with the published LightX2V I2V key names (`diffusion_model.blocks.N.self_attn.q.
    lora_down.weight`, `cross_attn.k_img.*`, `ffn.0.*`, `.diff_b` biases, `norm_k_img.diff`,
    `diff_m`), random values in the tiny model's shapes. `image_branch=False`: without the CLIP
    branch's `k_img`/`v_img` layers (Wan 2.2's experts have none)."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * scale

    sd = {}
    for i in range(LAYERS):
        b = f"diffusion_model.blocks.{i}"
        layers = {f"self_attn.{o}": (INNER, INNER) for o in "qkvo"}
        # cross-attention reads text already projected to the inner width
        layers.update({f"cross_attn.{o}": (INNER, INNER) for o in "qkvo"})
        if image_branch:
            layers.update({"cross_attn.k_img": (INNER, INNER), "cross_attn.v_img": (INNER, INNER)})
        layers.update({"ffn.0": (FFN, INNER), "ffn.2": (INNER, FFN)})
        for name, (out_f, in_f) in layers.items():
            sd[f"{b}.{name}.lora_down.weight"] = rnd(rank, in_f)
            sd[f"{b}.{name}.lora_up.weight"] = rnd(out_f, rank)
            sd[f"{b}.{name}.diff_b"] = rnd(out_f)
        if image_branch:
            sd[f"{b}.cross_attn.norm_k_img.diff"] = torch.zeros(INNER)
        sd[f"{b}.diff_m"] = torch.zeros(1, 6, INNER)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def write_lightx2v_lora(
    path: Path, layers: int, inner: int, ffn: int, rank: int, device: str = "cpu", dtype=None, std: float = 0.01
) -> Path:
    """A LoRA file with the published LightX2V I2V key names (as `lightx2v_style_lora`) for a
    transformer of any size: `layers` blocks of width `inner` and FFN width `ffn`, rank `rank`
    (the published file is rank 64). Random values are drawn on `device` (the GPU for the
    full-size model) and written in `dtype` (default float32)."""
    import torch
    from safetensors.torch import save_file

    dtype = dtype or torch.float32
    g = torch.Generator(device).manual_seed(0)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g, device=device) * std).to(dtype).cpu()

    shapes = {f"self_attn.{o}": (inner, inner) for o in "qkvo"}
    shapes.update({f"cross_attn.{o}": (inner, inner) for o in ("q", "k", "v", "o", "k_img", "v_img")})
    shapes.update({"ffn.0": (ffn, inner), "ffn.2": (inner, ffn)})
    sd = {}
    for i in range(layers):
        b = f"diffusion_model.blocks.{i}"
        for name, (out_f, in_f) in shapes.items():
            sd[f"{b}.{name}.lora_down.weight"] = rnd(rank, in_f)
            sd[f"{b}.{name}.lora_up.weight"] = rnd(out_f, rank)
            sd[f"{b}.{name}.diff_b"] = rnd(out_f)
        sd[f"{b}.cross_attn.norm_k_img.diff"] = torch.zeros(inner, dtype=dtype)
        sd[f"{b}.diff_m"] = torch.zeros(1, 6, inner, dtype=dtype)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def plain_frames(pipe, first, last, prompt, num_frames, steps, guidance, seed, height, width):
    """What diffusers itself makes from the first and last image (`last` None: the first alone),
    the pipeline's defaults for everything else, as uint8 frames."""
    import numpy as np
    import torch
    from PIL import Image

    out = pipe(
        image=Image.fromarray(first),
        last_image=None if last is None else Image.fromarray(last),
        prompt=prompt,
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).frames[0]
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
