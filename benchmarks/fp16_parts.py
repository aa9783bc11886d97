"""Where fp16 and bf16 on the GPU differ from fp32 on the CPU, part by part, on the tiny pipeline.

python benchmarks/fp16_parts.py      # needs CUDA; prints one JSON line per part and dtype
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np
    import torch
    from PIL import Image

    from backend.pipeline.framepack.compute_dtype import ComputePolicy, keep_stream_fp32
    from tests.helpers.framepack_models import build_pipeline
    from tests.helpers.tiny_framepack import TINY_SPEC

    spec = copy.deepcopy(TINY_SPEC)
    ref = build_pipeline(spec, "cpu", torch.float32, seed=0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    pixels = ref.video_processor.preprocess(image, 64, 96)
    latents = torch.randn(1, 4, 3, 8, 12, generator=torch.Generator().manual_seed(1))

    def parts(pipe, device, dtype, policy):
        dev = torch.device(device)
        with torch.no_grad():
            embeds, pooled, _ = pipe.encode_prompt(prompt="a cat walks", device=dev)
            img = pipe.encode_image(pixels.to(dev, dtype), device=dev)
            enc = pipe.vae.encode(pixels.unsqueeze(2).to(dev, dtype)).latent_dist.mean
            dec = pipe.vae.decode(latents.to(dev, dtype), return_dict=False)[0]
        return {"prompt": embeds, "pooled": pooled, "siglip": img, "vae_encode": enc, "vae_decode": dec}

    from tests.test_reach_streaming import _forward_inputs

    forward = _forward_inputs(ref.transformer)
    want = parts(ref, "cpu", torch.float32, None)
    with torch.no_grad():
        want["transformer"] = ref.transformer(**forward)[0]
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        pipe = build_pipeline(spec, "cpu", torch.float32, seed=0).to(dtype).to("cuda")
        if name == "fp16":
            keep_stream_fp32(pipe.transformer)
        got = parts(pipe, "cuda", dtype, ComputePolicy(name, "cuda"))
        with torch.no_grad(), ComputePolicy(name, "cuda").context():
            x = {
                k: (
                    v.to("cuda", dtype)
                    if isinstance(v, torch.Tensor) and v.is_floating_point()
                    else v.to("cuda")
                    if isinstance(v, torch.Tensor)
                    else v
                )
                for k, v in forward.items()
            }
            got["transformer"] = pipe.transformer(**x)[0]
        for key, w in want.items():
            g = got[key].float().cpu()
            print(
                json.dumps(
                    {
                        "dtype": name,
                        "part": key,
                        "rel_l2": float((g - w).norm() / w.norm()),
                        "finite": bool(torch.isfinite(g).all()),
                    }
                )
            )
    # Whole jobs through the generator: resident and partial, fp16 and bf16, against CPU fp32.
    import dataclasses

    from backend.pipeline.framepack.engine import FramePackEngine
    from backend.utils.config import Settings
    from tests.test_reach_streaming import PARAMS, SEGMENT, SPEC, _images, _plan

    def job(dtype_name, device, plan):
        pipe = build_pipeline(SPEC, "cpu", torch.float32, seed=0)
        if device == "cuda":
            pipe.to({"bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name])
        gen = FramePackEngine(Settings(framepack_compile="off", models_dir="/tmp/fp16_parts"))
        gen.attach(pipe, device, plan=plan) if plan else gen.attach(pipe, device, mode="cpu")
        a, b = _images()
        return gen.generate(a, b, "a cat", SEGMENT, PARAMS, lambda p: None).astype(int)

    cpu = job("fp32", "cpu", None)
    for dtype_name in ("bf16", "fp16"):
        for label, tiers in (("resident", ("gpu",) * 5), ("partial", None)):
            plan = _plan() if tiers is None else _plan(tiers)
            plan = dataclasses.replace(
                plan, dtype=dtype_name, text_on_disk=label == "partial", mode="partial" if tiers is None else "fp8"
            )
            try:
                frames = job(dtype_name, "cuda", plan)
                print(
                    json.dumps(
                        {"job": label, "dtype": dtype_name, "mean_abs_vs_cpu_fp32": float(np.abs(frames - cpu).mean())}
                    )
                )
            except Exception as exc:
                print(json.dumps({"job": label, "dtype": dtype_name, "error": repr(exc)[:300]}))


if __name__ == "__main__":
    main()
