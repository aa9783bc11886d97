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

# Model configs in the shape `framepack_models.build_pipeline` takes (the same builder makes the
# full-size random models on the GPU machine).
TINY_SPEC = dict(
    transformer=dict(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_attention_heads=2,
        attention_head_dim=8,
        rope_axes_dim=(2, 2, 4),
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        text_embed_dim=LLAMA_HIDDEN,
        pooled_projection_dim=CLIP_HIDDEN,
        has_image_proj=True,
        image_proj_dim=SIGLIP_HIDDEN,
        has_clean_x_embedder=True,
        guidance_embeds=True,
    ),
    vae=dict(
        latent_channels=LATENT_CHANNELS,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        mid_block_add_attention=False,
    ),
    llama=dict(
        vocab_size=32,
        hidden_size=LLAMA_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    ),
    llama_full_layers=3,
    clip=dict(
        vocab_size=32,
        hidden_size=CLIP_HIDDEN,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=CLIP_HIDDEN,
    ),
    siglip=dict(
        hidden_size=SIGLIP_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    ),
    words="a the cat dog walks runs turns camera slowly toward light smiles".split(),
)


def build_tiny_pipeline(seed: int = 0):
    import torch

    from tests.helpers.framepack_models import build_pipeline

    return build_pipeline(TINY_SPEC, "cpu", torch.float32, seed=seed)


def save_tiny_pipeline(directory: Path, seed: int = 0) -> Path:
    """Writes the tiny pipeline in diffusers layout (what FRAMEPACK_DIR points to)."""
    directory = Path(directory)
    if (directory / "model_index.json").exists():
        return directory
    build_tiny_pipeline(seed).save_pretrained(str(directory))
    return directory
