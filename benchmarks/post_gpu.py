"""Frames per second of each post-processing stage, random-init weights of the real models.

Full size (GPU): 640x608 input; RIFE also at 1280x1216 (the x2-upscaled frame it meets in the
chain). Each stage is measured at fp32 and (on CUDA) fp16/bf16 over several batch sizes, and
against the naive loop (one frame per call, fp32, no batching) in the same run.

    .venv/bin/python benchmarks/post_gpu.py            # GPU, full size
    .venv/bin/python benchmarks/post_gpu.py --tiny     # CPU smoke run, small sizes

Targets on an H100: RIFE 2x at 1280x1216 >= 100 fps, compact x4 from 640x608 >= 60 fps,
RRDB x4 >= 8 fps, CodeFormer >= 30 faces/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from backend.pipeline.face_restore import CodeFormerRestorer  # noqa: E402
from backend.pipeline.interpolator import RifeInterpolator  # noqa: E402
from backend.pipeline.rife_ifnet import IFNet, load_ifnet  # noqa: E402
from backend.pipeline.upscaler import Upscaler, load_spandrel  # noqa: E402
from tests.helpers.postprocess import (  # noqa: E402
    codeformer_release_state,
    rife_checkpoint_state,
    upscaler_release_state,
)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rate(fn, items: int, device: str, min_seconds: float) -> float:
    fn()  # warm-up (cudnn autotune, allocations)
    _sync(device)
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return runs * items / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="small sizes, CPU friendly")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--tile", type=int, default=0, help="upscaler tile (0 = whole frame)")
    args = parser.parse_args()
    device = args.device
    batches = [int(b) for b in args.batches.split(",")]
    h, w = (64, 64) if args.tiny else (608, 640)
    seconds = 0.5 if args.tiny else args.seconds
    precisions = [False, True] if device.startswith("cuda") else [False]
    torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(0)
    print(f"device={device} ({torch.cuda.get_device_name() if device.startswith('cuda') else 'cpu'}) input={w}x{h}")
    print(f"{'stage':34s} {'precision':9s} {'batch':>5s} {'rate':>10s}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # --- upscalers ---
        for name, unit in (("realesr-animevideov3", "fps"), ("realesrgan-x4plus", "fps")):
            torch.save(upscaler_release_state(name, num_blocks=2 if args.tiny else None), tmp / f"{name}.pth")
            descriptor = load_spandrel(tmp / f"{name}.pth")
            frames = rng.integers(0, 255, (max(batches), h, w, 3), dtype=np.uint8)
            naive = Upscaler(descriptor, 4, device=device, half=False, tile=0, batch_size=1)
            rate = _rate(lambda: [naive.process(f) for f in frames[:2]], 2, device, seconds)
            print(f"{name + ' x4 naive loop':34s} {'fp32':9s} {1:5d} {rate:8.2f} {unit}")
            for half in precisions:
                for bs in batches:
                    up = Upscaler(descriptor, 4, device=device, half=half, tile=args.tile, batch_size=bs)
                    rate = _rate(lambda: up.process(frames[:bs]), bs, device, seconds)
                    print(f"{name + ' x4':34s} {'fp16' if half else 'fp32':9s} {bs:5d} {rate:8.2f} {unit}")
            del descriptor
            if device.startswith("cuda"):
                torch.cuda.empty_cache()

        # --- RIFE ---
        torch.save(rife_checkpoint_state(IFNet()), tmp / "flownet.pkl")
        model = load_ifnet(tmp / "flownet.pkl")
        for rh, rw in ((h, w), (2 * h, 2 * w)):
            frames = rng.integers(0, 255, (max(batches) + 1, rh, rw, 3), dtype=np.uint8)

            def naive_run():  # one pair, one timestep per call
                RifeInterpolator(model, 2, device=device, scene_threshold=1.0, batch_size=1).process(frames[:3])

            rate = _rate(naive_run, 2, device, seconds)
            print(f"{f'RIFE 2x {rw}x{rh} naive (pairs/s)':34s} {'fp32':9s} {1:5d} {rate:8.2f} fps")
            for half in precisions:
                for bs in batches:

                    def run():
                        RifeInterpolator(
                            model, 2, device=device, half=half, scene_threshold=1.0, batch_size=bs
                        ).process(frames[: bs + 1])

                    rate = _rate(run, bs, device, seconds)
                    print(
                        f"{f'RIFE 2x {rw}x{rh} (new frames/s)':34s} {'fp16' if half else 'fp32':9s} {bs:5d} {rate:8.2f} fps"
                    )
            model = model.float()

        # --- CodeFormer ---
        torch.save(codeformer_release_state(n_layers=1 if args.tiny else 9), tmp / "codeformer.pth")
        for half in precisions:
            restorer = CodeFormerRestorer.from_checkpoint(
                tmp / "codeformer.pth", fidelity=0.7, device=device, half=half
            )
            for bs in batches if device.startswith("cuda") else [1]:
                faces = torch.rand(bs, 3, 512, 512, device=device) * 2 - 1
                rate = _rate(lambda: restorer(faces), bs, device, seconds)
                print(f"{'CodeFormer 512 (faces/s)':34s} {'bf16' if half else 'fp32':9s} {bs:5d} {rate:8.2f} faces/s")


if __name__ == "__main__":
    main()
