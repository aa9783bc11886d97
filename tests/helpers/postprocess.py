"""Post-processing test material: random weights of the real architectures, and frames.

Weights are random but of the real architectures, saved in each published file's layout into
the folders the settings name, so every test goes through the registry's real loading path. The
same builders make the full-size random models the GPU benchmarks measure.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from backend.utils.config import Settings

# --- state dicts laid out as the published files ----------------------------------------------


def rife_checkpoint_state(model) -> dict[str, torch.Tensor]:
    """The state dict as Practical-RIFE saves `flownet.pkl` (keys prefixed with `module.`)."""
    return {f"module.{k}": v.detach().clone() for k, v in model.state_dict().items()}


def retinaface_checkpoint_state(net) -> dict[str, torch.Tensor]:
    """A RetinaFace state dict laid out as the published detection_Resnet50_Final.pth."""
    return {f"module.{k}": v.detach().clone() for k, v in net.state_dict().items()}


def codeformer_release_state(n_layers: int = 9) -> dict:
    """A random CodeFormer laid out as the published codeformer.pth (`params_ema`)."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    model = CodeFormer(n_layers=n_layers)
    return {"params_ema": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def upscaler_release_state(name: str, num_blocks: int | None = None) -> dict:
    """A random state dict of upscale model `name` laid out as its published file.

    x4plus/x2plus: basicsr RRDBNet keys (`conv_first`, `body.N.rdbM.convK`, ...) under
    `params_ema`; animevideov3: SRVGGNetCompact `body.N` keys under `params`. `num_blocks` shrinks
    the RRDB trunk for fast tests; None gives the real 23 blocks.
    """
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    if name == "realesr-animevideov3":
        model = Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu")
        return {"params": {k: v.clone() for k, v in model.state_dict().items()}}
    if name in ("realesrgan-x4plus", "realesrgan-x2plus"):
        nb = num_blocks or 23
        shuffle = 2 if name == "realesrgan-x2plus" else None
        model = ESRGAN(
            in_nc=12 if shuffle else 3, out_nc=3, num_filters=64, num_blocks=nb, scale=4, shuffle_factor=shuffle
        )
        return {"params_ema": _rrdb_old_to_release(model.state_dict(), nb)}
    raise KeyError(f"no random builder for upscale model {name!r}")


def _rrdb_old_to_release(old: dict, num_blocks: int) -> dict:
    """spandrel's old-ESRGAN key layout -> the basicsr RRDBNet layout Real-ESRGAN files use."""
    fixed = {
        "model.0": "conv_first",
        f"model.1.sub.{num_blocks}": "conv_body",
        "model.3": "conv_up1",
        "model.6": "conv_up2",
        "model.8": "conv_hr",
        "model.10": "conv_last",
    }
    new = {}
    for key, value in old.items():
        m = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", key)
        if m:
            new[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value.clone()
            continue
        prefix, _, kind = key.rpartition(".")
        if prefix not in fixed:
            raise KeyError(f"unexpected RRDB key {key}")
        new[f"{fixed[prefix]}.{kind}"] = value.clone()
    return new


# --- weights saved where the settings look for them -------------------------------------------


def weights_env(models: Settings) -> dict[str, str]:
    """A studio server's environment naming `models`' weight folders (downloads fail fast)."""
    return {
        "RIFE_DIR": str(models.rife_dir),
        "UPSCALER_DIR": str(models.upscaler_dir),
        "CODEFORMER_DIR": str(models.codeformer_dir),
        "FACEXLIB_DIR": str(models.facexlib_dir),
        "STUDIO_WEIGHTS_DOWNLOAD_TIMEOUT_S": "2",
    }


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
    from backend.pipeline.rife_ifnet import IFNet
    from backend.utils.model_registry import weight_path

    torch.manual_seed(seed)
    path = weight_path(f"rife-{settings.rife_model}", settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(rife_checkpoint_state(IFNet()), path)
    return path


def save_upscaler(settings: Settings, name: str, num_blocks: int = 2, seed: int = 0) -> Path:
    from backend.utils.model_registry import weight_path

    torch.manual_seed(seed)
    path = weight_path(name, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(upscaler_release_state(name, num_blocks=num_blocks), path)
    return path


def save_retinaface(settings: Settings, faces: str = "real", seed: int = 0) -> Path:
    """A random ResNet-50 RetinaFace in the published layout.

    faces="never"/"always" bias the classification heads so that the (real) network reports no
    face anywhere / a face at every anchor: crafted inputs for the no-face and auto-mode tests.
    """
    from facexlib.detection.retinaface import RetinaFace

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
