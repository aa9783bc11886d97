"""A tiny, randomly initialised FramePack pipeline of the real architecture, for CPU tests.

Every component is the real class with a small config; the pipeline is written with
`save_pretrained`, so the studio loads it through its real `FRAMEPACK_DIR` path. Recipe facts:
rope axes sum to the head dim; the Llama encoder needs >= 3 layers (the pipeline reads
hidden_states[-3]); the VAE keeps 4 down blocks for 8x spatial / 4x temporal compression.
"""

from __future__ import annotations

from pathlib import Path

LATENT_CHANNELS = 4
LLAMA_HIDDEN = 16
CLIP_HIDDEN = 8
SIGLIP_HIDDEN = 16


def _word_tokenizer(cls, model_max_length: int, bos: str, eos: str, pad: str):
    """A word-level tokenizer built in memory (no download) wrapped in the pipeline's class."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<unk>", pad, bos, eos] + "a the cat dog walks runs turns camera slowly toward light smiles".split()
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return cls(
        tokenizer_object=core, bos_token=bos, eos_token=eos, pad_token=pad, unk_token="<unk>",
        model_max_length=model_max_length,
    )


def build_tiny_pipeline(seed: int = 0):
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
        PreTrainedTokenizerFast,
        SiglipImageProcessor,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    torch.manual_seed(seed)
    transformer = HunyuanVideoFramepackTransformer3DModel(
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        num_attention_heads=2, attention_head_dim=8, rope_axes_dim=(2, 2, 4),
        num_layers=1, num_single_layers=1, num_refiner_layers=1,
        text_embed_dim=LLAMA_HIDDEN, pooled_projection_dim=CLIP_HIDDEN,
        has_image_proj=True, image_proj_dim=SIGLIP_HIDDEN, has_clean_x_embedder=True,
        guidance_embeds=True,
    )
    vae = AutoencoderKLHunyuanVideo(
        latent_channels=LATENT_CHANNELS, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        norm_num_groups=4, mid_block_add_attention=False,
    )
    text_encoder = LlamaModel(LlamaConfig(
        vocab_size=32, hidden_size=LLAMA_HIDDEN, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
    ))
    text_encoder_2 = CLIPTextModel(CLIPTextConfig(
        vocab_size=32, hidden_size=CLIP_HIDDEN, intermediate_size=16, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=CLIP_HIDDEN,
        bos_token_id=2, eos_token_id=3, pad_token_id=1,
    ))
    image_encoder = SiglipVisionModel(SiglipVisionConfig(
        hidden_size=SIGLIP_HIDDEN, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8,
    ))
    feature_extractor = SiglipImageProcessor(size={"height": 32, "width": 32})
    tokenizer = _word_tokenizer(PreTrainedTokenizerFast, 512, "<s>", "</s>", "<pad>")
    tokenizer_2 = _word_tokenizer(PreTrainedTokenizerFast, 77, "<|startoftext|>", "<|endoftext|>", "<|endoftext|>")
    return HunyuanVideoFramepackPipeline(
        text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2, image_encoder=image_encoder, feature_extractor=feature_extractor,
    )


def save_tiny_pipeline(directory: Path, seed: int = 0) -> Path:
    """Writes the tiny pipeline in diffusers layout (what FRAMEPACK_DIR points to)."""
    directory = Path(directory)
    if (directory / "model_index.json").exists():
        return directory
    build_tiny_pipeline(seed).save_pretrained(str(directory))
    return directory
