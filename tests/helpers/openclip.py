"""A tiny random OpenCLIP model of the real architecture, saved as a local checkpoint folder that the
studio loads through its real loading path (`load_openclip`), and the settings and images to use it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from backend.utils.config import Settings

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    # vocab_size and context_length are the real tokenizer's (open_clip's bundled BPE vocab).
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_clip_dir(root: Path, seed: int = 0) -> Path:
    """Build, randomly initialise and save a tiny CLIP in open_clip's local-dir layout."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CFG)
    folder = root / "tiny-openclip"
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": TINY_CFG,
                "preprocess_cfg": {
                    "mean": [0.48145466, 0.4578275, 0.40821073],
                    "std": [0.26862954, 0.26130258, 0.27577711],
                },
            }
        )
    )
    return folder


def clip_settings(tmp_path: Path, clip_dir: Path | None, **extra) -> Settings:
    model = f"local-dir:{clip_dir}" if clip_dir else "ViT-B-32"
    return Settings(
        data_dir=tmp_path / "data",
        models_dir=tmp_path / "models",
        openclip_model=model,
        device="cpu",
        **extra,
    )


def pattern_image(kind: str, size=(96, 64)) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    if kind == "gradient":
        arr = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], -1)
    elif kind == "checker":
        arr = np.repeat((((x // 8) + (y // 8)) % 2 * 255)[..., None], 3, -1)
    elif kind == "red":
        arr = np.zeros((h, w, 3), int)
        arr[..., 0] = 220
    else:
        rng = np.random.default_rng(abs(hash(kind)) % 2**32)
        arr = rng.integers(0, 256, (h, w, 3))
    return Image.fromarray(arr.astype(np.uint8), "RGB")
