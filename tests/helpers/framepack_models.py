"""The real FramePack pipeline classes with random weights, at any size.

Time and memory depend only on shapes, so the GPU benchmarks measure full-size random models built
here, and the CPU tests run tiny ones of the same architecture (`tiny_framepack.TINY_SPEC`).
"""

from __future__ import annotations

# Real sizes: the lllyasviel/FramePackI2V_HY transformer config, HunyuanVideo's VAE (its default
# config), encoders with the real output widths.
FULL_SPEC = dict(
    transformer=dict(
        in_channels=16,
        out_channels=16,
        num_attention_heads=24,
        attention_head_dim=128,
        num_layers=20,
        num_single_layers=40,
        num_refiner_layers=2,
        mlp_ratio=4.0,
        patch_size=2,
        patch_size_t=1,
        qk_norm="rms_norm",
        guidance_embeds=True,
        text_embed_dim=4096,
        pooled_projection_dim=768,
        rope_theta=256.0,
        rope_axes_dim=(16, 56, 56),
        image_condition_type=None,
        has_image_proj=True,
        image_proj_dim=1152,
        has_clean_x_embedder=True,
    ),
    vae=dict(),
    llama=dict(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=3,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
    ),
    llama_full_layers=32,
    clip=dict(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=1,
        num_attention_heads=12,
        max_position_embeddings=77,
        projection_dim=768,
    ),
    siglip=dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=1,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
    ),
)


def _tokenizer(max_length: int, bos: str, eos: str, pad: str, vocab_size: int, words: list[str]):
    """A word-level tokenizer built in memory over `words`, no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(["<unk>", pad, bos, eos] + words)) if i < vocab_size}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token="<unk>",
        model_max_length=max_length,
    )


def build_pipeline(spec: dict, device: str, dtype, full_text_encoder: bool = False, seed: int = 0):
    """The real pipeline classes with random weights, initialised on `device` in `dtype`.

    `spec` holds each model's config (FULL_SPEC here, the tests' TINY_SPEC, the benchmarks' own)
    and the words the tokenizers know.
    """
    import torch
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoFramepackPipeline,
        HunyuanVideoFramepackTransformer3DModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        LlamaConfig,
        LlamaModel,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # initialise where it runs: no slow 13B CPU init
            transformer = HunyuanVideoFramepackTransformer3DModel(**spec["transformer"])
            vae = AutoencoderKLHunyuanVideo(**spec["vae"])
            llama = dict(spec["llama"])
            if full_text_encoder:
                llama["num_hidden_layers"] = spec["llama_full_layers"]
            text_encoder = LlamaModel(LlamaConfig(**llama))
            text_encoder_2 = CLIPTextModel(
                CLIPTextConfig(**spec["clip"], bos_token_id=2, eos_token_id=3, pad_token_id=1)
            )
            image_encoder = SiglipVisionModel(SiglipVisionConfig(**spec["siglip"]))
    finally:
        torch.set_default_dtype(previous)
    size = spec["siglip"]["image_size"]
    words = spec["words"]
    pipe = HunyuanVideoFramepackPipeline(
        text_encoder=text_encoder,
        tokenizer=_tokenizer(512, "<s>", "</s>", "<pad>", spec["llama"]["vocab_size"], words),
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder_2=text_encoder_2,
        tokenizer_2=_tokenizer(
            77, "<|startoftext|>", "<|endoftext|>", "<|endoftext|>", spec["clip"]["vocab_size"], words
        ),
        image_encoder=image_encoder,
        feature_extractor=SiglipImageProcessor(size={"height": size, "width": size}),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
