"""Shared helpers of the post-processing tests (this module holds no tests itself).

Weights are random but of the real architectures, saved in each published file's layout into
the folders the settings name, so every test goes through the registry's real loading path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.config import Settings


def make_settings(root: Path, **overrides) -> Settings:
    values = dict(
        data_dir=root / "data",
        models_dir=root / "models",
        codeformer_dir=root / "models" / "codeformer",
        rife_dir=root / "models" / "rife",
        upscaler_dir=root / "models" / "realesrgan",
        facexlib_dir=root / "models" / "facexlib",
        device="cpu",
        weights_download_timeout_s=5.0,
    )
    values.update(overrides)
    return Settings(**values)


def save_rife(settings: Settings, seed: int = 0) -> Path:
    from backend.pipeline.rife_ifnet import IFNet, checkpoint_state
    from backend.utils.model_registry import weight_path

    torch.manual_seed(seed)
    path = weight_path(f"rife-{settings.rife_model}", settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint_state(IFNet()), path)
    return path


def save_upscaler(settings: Settings, name: str, num_blocks: int = 2, seed: int = 0) -> Path:
    from backend.pipeline.upscaler import release_state_dict
    from backend.utils.model_registry import weight_path

    torch.manual_seed(seed)
    path = weight_path(name, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(release_state_dict(name, num_blocks=num_blocks), path)
    return path


def save_retinaface(settings: Settings, faces: str = "real", seed: int = 0) -> Path:
    """A random ResNet-50 RetinaFace in the published layout.

    faces="never"/"always" bias the classification heads so that the (real) network reports no
    face anywhere / a face at every anchor: crafted inputs for the no-face and auto-mode tests.
    """
    from facexlib.detection.retinaface import RetinaFace

    from backend.pipeline.face_restore import retinaface_checkpoint_state
    from backend.utils.model_registry import weight_path

    torch.manual_seed(seed)
    net = RetinaFace(network_name="resnet50", half=False, device=torch.device("cpu"))
    if faces in ("never", "always"):
        with torch.no_grad():
            for head in net.ClassHead:
                head.conv1x1.weight.zero_()
                head.conv1x1.bias.copy_(torch.tensor([10.0, -10.0] * (head.conv1x1.bias.numel() // 2)))
                if faces == "always":
                    head.conv1x1.bias.mul_(-1)
    path = weight_path("retinaface-resnet50", settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(retinaface_checkpoint_state(net), path)
    return path


def save_codeformer(settings: Settings, n_layers: int = 1, seed: int = 0) -> Path:
    from backend.pipeline.face_restore import codeformer_release_state
    from backend.utils.model_registry import weight_path

    torch.manual_seed(seed)
    path = weight_path("codeformer", settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(codeformer_release_state(n_layers=n_layers), path)
    return path


def smooth_frames(n: int, h: int, w: int, seed: int = 0, shift: float = 1.0) -> np.ndarray:
    """Low-frequency colour patterns drifting `shift` px per frame (what interpolation expects)."""
    rng = np.random.default_rng(seed)
    fx, fy, phase = rng.uniform(1, 3, 3), rng.uniform(1, 3, 3), rng.uniform(0, 6.28, 3)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        for c in range(3):
            v = np.sin((xs + i * shift) / w * 6.28 * fx[c] + phase[c]) * np.cos(ys / h * 6.28 * fy[c])
            frames[i, ..., c] = np.clip(127.5 + 100 * v, 0, 255).astype(np.uint8)
    return frames
