"""IFNet of Practical-RIFE 4.25 / 4.26 and of ECCV2022-RIFE HDv3, written for this project.

RIFE has no maintained package, so the networks live here. Module names and shapes follow the
published checkpoints (`flownet.pkl`: a plain state dict whose keys carry the `module.` prefix of
the data-parallel wrapper it was trained in), so `load_ifnet` loads them with strict keys: any
drift in the architecture fails loudly instead of running with half-random weights. Which of the
two networks a file holds is read from its keys (`detect_architecture`); a file that is neither
fails with one sentence saying so.

Layout: a small encoder (`encode`) gives each frame 4 feature channels at full resolution; five
`IFBlock`s refine a bidirectional flow (4 ch), a fusion mask (1 ch) and 8 hidden channels from
coarse (1/16) to fine (1/1). The timestep is an input plane, so any t in (0, 1) is one forward.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from backend.contracts.errors import StudioError

# Downscale of each block's input, coarse to fine (Practical-RIFE 4.25's inference list).
SCALE_LIST = (16.0, 8.0, 4.0, 2.0, 1.0)
# Inputs are padded to this multiple: 1/16 in the coarsest block, then two stride-2 convs.
PAD_MULTIPLE = 64


def _conv_act(cin: int, cout: int, stride: int) -> nn.Sequential:
    # Sequential(conv, act) so that the keys read `conv0.<i>.0.weight` as in the checkpoints.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.LeakyReLU(0.2, True))


class Head(nn.Module):
    """Per-frame feature encoder: 3 -> 4 channels at the input resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, 4, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        x = self.relu(self.cnn2(x))
        return self.cnn3(x)


class ResConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, channels, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One refinement level: works at 1/(4*scale) resolution, answers at full resolution."""

    def __init__(self, in_planes: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv_act(in_planes, c // 2, 2), _conv_act(c // 2, c, 2))
        self.convblock = nn.Sequential(*(ResConv(c) for _ in range(8)))
        # 52 channels shuffled to 13 at twice the size: flow 4 + mask 1 + hidden 8.
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * 13, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float):
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: samples `image` at pixel + flow (flow in pixels, x then y)."""
    n, _, h, w = flow.shape
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).unsqueeze(0)  # (1,h,w,2)
    # Pixels to the [-1, 1] grid of align_corners=True. Python scalars, not a new device tensor:
    # building one per call is a host-to-device copy in the hot loop.
    step = torch.stack((flow[:, 0] * (2.0 / max(1, w - 1)), flow[:, 1] * (2.0 / max(1, h - 1))), dim=-1)
    grid = base + step
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # Block 0 sees both frames (6), t (1) and both features (8); later blocks also the
        # warped features, mask, hidden channels and (inside the block) the flow so far.
        self.block0 = IFBlock(7 + 8, c=192)
        self.block1 = IFBlock(8 + 4 + 8 + 8, c=128)
        self.block2 = IFBlock(8 + 4 + 8 + 8, c=96)
        self.block3 = IFBlock(8 + 4 + 8 + 8, c=64)
        self.block4 = IFBlock(8 + 4 + 8 + 8, c=32)
        self.encode = Head()

    def forward(
        self,
        img0: torch.Tensor,
        img1: torch.Tensor,
        timestep: torch.Tensor,
        scale_list: tuple[float, ...] = SCALE_LIST,
    ) -> torch.Tensor:
        """Frames (n,3,H,W) in [0,1], H and W multiples of PAD_MULTIPLE; timestep (n,) or (n,1,1,1).

        Returns the frame at t between img0 (t=0) and img1 (t=1).
        """
        n, _, h, w = img0.shape
        t = timestep.reshape(n, 1, 1, 1).to(img0.dtype).expand(n, 1, h, w)
        f0, f1 = self.encode(img0), self.encode(img1)
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
        flow, mask, hidden = blocks[0](torch.cat((img0, img1, f0, f1, t), 1), None, scale_list[0])
        warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        for block, scale in zip(blocks[1:], scale_list[1:]):
            wf0, wf1 = warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4])
            delta, mask, hidden = block(torch.cat((warped0, warped1, wf0, wf1, t, mask, hidden), 1), flow, scale)
            flow = flow + delta
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


# --- ECCV2022-RIFE HDv3 (the v3.x `train_log/flownet.pkl` the RIFE paper's repo publishes) -------
# Four blocks on the frames alone (no feature encoder), PReLU activations, a flow (4 ch) and mask
# (1 ch) per block, coarse 1/8 to fine 1/1. The checkpoint also carries a teacher block and a
# refinement U-Net used in training / the slow mode; inference (fast mode) uses neither.
HDV3_SCALE_LIST = (8.0, 4.0, 2.0, 1.0)
HDV3_UNUSED_PREFIXES = ("block_tea.", "contextnet.", "unet.")
# Flow this large (pixels, at the second block) means the coarsest scale was too fine for the
# motion: the pass is redone with every scale doubled, as the reference inference does.
HDV3_LARGE_FLOW = 32.0


def _conv_prelu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.PReLU(cout))


class IFBlockHDv3(nn.Module):
    def __init__(self, in_planes: int, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv_prelu(in_planes, c // 2, 2), _conv_prelu(c // 2, c, 2))
        self.convblock = nn.Sequential(*(_conv_prelu(c, c) for _ in range(8)))
        self.lastconv = nn.ConvTranspose2d(c, 5, 4, 2, 1)

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float):
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        feat = self.conv0(x)
        out = self.lastconv(self.convblock(feat) + feat)
        out = F.interpolate(out, scale_factor=scale * 2, mode="bilinear", align_corners=False)
        return out[:, :4] * (scale * 2), out[:, 4:5]


class IFNetHDv3(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block0 = IFBlockHDv3(7, c=192)
        self.block1 = IFBlockHDv3(8 + 4, c=128)
        self.block2 = IFBlockHDv3(8 + 4, c=96)
        self.block3 = IFBlockHDv3(8 + 4, c=64)

    def forward(
        self,
        img0: torch.Tensor,
        img1: torch.Tensor,
        timestep: torch.Tensor,
        scale_list: tuple[float, ...] = HDV3_SCALE_LIST,
    ) -> torch.Tensor:
        """Same contract as `IFNet.forward`: the frame at t between img0 and img1."""
        n, _, h, w = img0.shape
        t = timestep.reshape(n, 1, 1, 1).to(img0.dtype).expand(n, 1, h, w)
        scales = list(scale_list)
        blocks = (self.block0, self.block1, self.block2, self.block3)
        flow, mask = blocks[0](torch.cat((img0, img1, t), 1), None, scales[0])
        warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        for i in range(1, len(blocks)):
            x = torch.cat((warped0, warped1, t, mask), 1)
            delta, dmask = blocks[i](x, flow, scales[i])
            if i == 1 and delta[:, :2].abs().max() > HDV3_LARGE_FLOW and delta[:, 2:4].abs().max() > HDV3_LARGE_FLOW:
                scales = [s * 2 for s in scales]
                flow, mask = blocks[0](torch.cat((img0, img1, t), 1), None, scales[0])
                warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
                delta, dmask = blocks[i](torch.cat((warped0, warped1, t, mask), 1), flow, scales[i])
            flow, mask = flow + delta, mask + dmask
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


class RifeCheckpointError(StudioError, RuntimeError):
    """A file that is not a RIFE checkpoint this studio can run; the message is one sentence."""


ARCHITECTURES = {"4.25": IFNet, "hdv3": IFNetHDv3}


def detect_architecture(state: dict) -> str | None:
    """ "4.25" (Practical-RIFE 4.25/4.26), "hdv3" (ECCV2022-RIFE v3.x) or None, from the keys."""
    keys = set(state)
    if "encode.cnn0.weight" in keys and "block4.lastconv.0.weight" in keys:
        return "4.25"
    if "block0.conv0.0.1.weight" in keys and "block3.lastconv.weight" in keys and "block4.conv0.0.0.weight" not in keys:
        return "hdv3"
    return None


def load_ifnet(path: Path) -> nn.Module:
    """Loads a RIFE `flownet.pkl` (tensors only, `weights_only=True`) into the network its keys
    name, with strict keys (parts only training uses are dropped first)."""
    path = Path(path)
    what = {"path": str(path)}
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RifeCheckpointError("rife_checkpoint_unreadable", **what) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RifeCheckpointError("rife_checkpoint_no_tensors", **what)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    kind = detect_architecture(state)
    if kind is None:
        raise RifeCheckpointError("rife_checkpoint_unknown_layers", **what)
    if kind == "hdv3":
        state = {k: v for k, v in state.items() if not k.startswith(HDV3_UNUSED_PREFIXES)}
    model = ARCHITECTURES[kind]()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RifeCheckpointError("rife_checkpoint_mismatch", kind=kind, **what) from exc
    model.architecture = kind
    return model.eval()


def verify_checkpoint(path: Path) -> None:
    """Raises `RifeCheckpointError` unless `path` loads into one of the RIFE networks."""
    load_ifnet(path)
