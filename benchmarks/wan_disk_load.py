"""Host memory of loading Wan's transformer for the disk placement (`group_offload_disk`), CPU.

The reference is what diffusers does by itself: `WanTransformer3DModel.from_pretrained(dtype=bf16)`
then `enable_group_offload(offload_to_disk_path=…)`, which holds the whole bf16 transformer in RAM
before the layer files are written. Ours is the studio's path (what `wan_loading.read` and
`group_offload` do for a transformer on disk: built without weights, files written from the
checkpoint one tensor at a time). Both write the same files
(tests/pipeline/test_wan_layer_files.py). Each load runs in a process of its own (peak RSS is per
process), on a transformer of Wan 2.1 14B's real width (5120, FFN 13824, 40 heads, text 4096, image
1280) with fewer blocks, random fp32 weights saved in diffusers layout (fp32, as the hub's files are).
Two depths show how each peak grows with the model; the full 40 blocks is extrapolated.

The text encoder (UMT5-XXL's real width, `--text-encoder-layers` of its 24 layers, fp32 files) is
measured the same way for what the host keeps once it is placed: `pinned`, the earlier disk
placement (loaded in bf16, its linears int8, kept in RAM for the GPU to copy from), against `disk`,
today's (built on the meta device, int8 layer files written from the checkpoint).

    python benchmarks/wan_disk_load.py                 # 2 and 6 blocks: ~8 GB of disk, a few minutes
    python benchmarks/wan_disk_load.py --layers 1 2    # quicker
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1024**3
FULL_BLOCKS = 40


def config(layers: int) -> dict:
    """Wan 2.1 FLF2V 14B's transformer config (as tests/fixtures), `layers` blocks deep."""
    cfg = json.loads((ROOT / "tests/fixtures/wan/wan21_flf2v_transformer_config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["num_layers"] = layers
    return cfg


def save_checkpoint(folder: Path, layers: int) -> int:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    model = WanTransformer3DModel(**config(layers))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(str(folder / "transformer"), max_shard_size="5GB")
    return sum(p.numel() for p in model.parameters())


def save_text_encoder(folder: Path, layers: int) -> int:
    """UMT5-XXL's encoder `layers` deep, random fp32, in a diffusers folder's text_encoder/."""
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    from benchmarks.wan_gpu import FULL

    torch.manual_seed(0)
    model = UMT5EncoderModel(UMT5Config(**dict(FULL["umt5"], num_layers=layers)))
    model.save_pretrained(str(folder / "text_encoder"), max_shard_size="5GB")
    index = {"text_encoder": ["transformers", "UMT5EncoderModel"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return sum(p.numel() for p in model.parameters())


def child(mode: str, folder: Path, scratch: Path) -> dict:
    """One load, in this process: peak RSS (all, and anonymous) while it runs, and what it keeps."""
    import torch

    from backend.pipeline.wan.wan_loading import group_offload
    from benchmarks.framepack_gpu import RssSampler

    rss = RssSampler()
    began = time.perf_counter()

    if mode == "reference":  # diffusers by itself
        from diffusers import WanTransformer3DModel

        model = WanTransformer3DModel.from_pretrained(str(folder), subfolder="transformer", dtype=torch.bfloat16)
        read_s = time.perf_counter() - began
        model.enable_group_offload(
            onload_device=torch.device("cpu"),
            offload_type="leaf_level",
            low_cpu_mem_usage=True,
            offload_to_disk_path=str(scratch),
        )
    elif mode in ("pinned", "disk"):
        from backend.pipeline.framepack import weight_storage
        from backend.pipeline.wan import layer_files

        if mode == "pinned":
            from transformers import UMT5EncoderModel

            model = UMT5EncoderModel.from_pretrained(str(folder / "text_encoder"), dtype=torch.bfloat16)
            weight_storage.store_linears_8bit(model, "int8")
            read_s = time.perf_counter() - began
            group_offload(model, "cpu")
        else:
            model = layer_files.empty_text_encoder(folder, torch.bfloat16, "int8")
            reader = weight_storage.SafetensorsReader(weight_storage.safetensors_files(str(folder), "text_encoder"))
            read_s = time.perf_counter() - began
            group_offload(model, "cpu", scratch, (reader, torch.bfloat16))
    else:
        from backend.pipeline.framepack.weight_storage import SafetensorsReader, safetensors_files
        from backend.pipeline.wan import layer_files

        model = layer_files.empty_transformer(folder, "transformer", torch.bfloat16)
        reader = SafetensorsReader(safetensors_files(str(folder), "transformer"))
        read_s = time.perf_counter() - began
        group_offload(model, "cpu", scratch, (reader, torch.bfloat16))
    total = time.perf_counter() - began
    rss.sample()
    rss.stop()
    peak, peak_anon = rss.peak, rss.peak_anon
    import gc

    gc.collect()
    rss.reset()  # now: what the placed model keeps, measured as the peak is
    held = rss.peak_anon
    # Each file once: a linear's file also has a second name (a hard link, for user LoRAs).
    inodes = {p.stat().st_ino: p.stat().st_size for p in scratch.glob("group_*.safetensors")}
    files = sum(inodes.values())
    return {
        "peak_rss_gib": peak / GIB,
        "peak_rss_anon_gib": peak_anon / GIB,
        "held_rss_anon_gib": held / GIB,  # once placed, the model still in hand
        "read_s": read_s,
        "total_s": total,
        "layer_files_gib": files / GIB,
    }


def _run_child(mode: str, folder: Path, scratch: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(folder), str(scratch)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    shutil.rmtree(scratch, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 6], help="block counts to load")
    ap.add_argument("--text-encoder-layers", type=int, default=2, help="UMT5 depth to load (0: none)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", nargs=3, metavar=("MODE", "FOLDER", "SCRATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mode, folder, scratch = args.child
        print(json.dumps(child(mode, Path(folder), Path(scratch))))
        return {}

    import platform

    import torch

    result: dict = {
        "command": "python benchmarks/wan_disk_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "runs": {},
    }
    work = Path(tempfile.mkdtemp(prefix="wan-disk-load-"))
    try:
        for layers in args.layers:
            folder = work / f"wan-{layers}"
            params = save_checkpoint(folder, layers)
            run = {"params": params, "bf16_gib": params * 2 / GIB}
            for mode in ("reference", "ours"):
                run[mode] = _run_child(mode, folder, work / f"scratch-{mode}-{layers}")
            run["ours/reference peak_rss_anon"] = (
                run["ours"]["peak_rss_anon_gib"] / run["reference"]["peak_rss_anon_gib"]
            )
            result["runs"][str(layers)] = run
            shutil.rmtree(folder, ignore_errors=True)
            print(f"{layers} blocks ({run['bf16_gib']:.2f} GiB bf16): " + json.dumps(run), flush=True)
        if args.text_encoder_layers:
            folder = work / "umt5"
            params = save_text_encoder(folder, args.text_encoder_layers)
            text = {"layers": args.text_encoder_layers, "params": params, "bf16_gib": params * 2 / GIB}
            for mode in ("pinned", "disk"):
                text[mode] = _run_child(mode, folder, work / f"scratch-{mode}-umt5")
            result["text_encoder"] = text
            shutil.rmtree(folder, ignore_errors=True)
            print("text encoder: " + json.dumps(text), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # Peak anonymous RSS grows with the model for the reference, not for ours: a line through the
    # two depths, extrapolated to the real 40 blocks.
    if len(args.layers) >= 2:
        a, b = (result["runs"][str(n)] for n in (args.layers[0], args.layers[-1]))
        span = args.layers[-1] - args.layers[0]
        for mode in ("reference", "ours"):
            # Not below 0: a flat peak measured a little lower at the larger depth is still flat.
            slope = max(0.0, (b[mode]["peak_rss_anon_gib"] - a[mode]["peak_rss_anon_gib"]) / span)
            result[f"{mode}_gib_per_block"] = slope
            result[f"{mode}_40_blocks_gib_extrapolated"] = b[mode]["peak_rss_anon_gib"] + slope * (
                FULL_BLOCKS - args.layers[-1]
            )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return result


if __name__ == "__main__":
    main()
