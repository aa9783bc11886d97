"""Speed and memory of the studio's Wan engine against the plain diffusers pipeline.

No weights can be downloaded, but time and memory depend only on shapes: this builds Wan 2.1
FLF2V 14B at its REAL size with random weights directly on the GPU (parameters are created on the
meta device, then materialised on the GPU and filled with small normal values: nothing of 14 B
parameters is allocated in host RAM), and in ONE process times:

(a) the plain `WanImageToVideoPipeline(image=…, last_image=…)` (s/step, the first step excluded as
    warm-up; a first whole job is run and reported apart: it pays cuBLAS/cuDNN set-up),
(b) the studio's `WanEngine` on the same job, its modules attached through `WanLoader.attach()`
    (the code `load()` runs after reading weights, with the fast mode's LoRA hooks attached) and
    the ratio (b)/(a),
(c) the fast mode: 4 steps, guidance 1.0, the distillation LoRA hooks on (random rank-64 weights
    with the published LightX2V key names and shapes), seconds per clip end to end (text + image
    encode, steps, VAE decode, frames to uint8),

with peak VRAM (allocated/reserved) and peak host RSS of each. `--plan` then moves the same modules
to the placement the studio picks for `--vram-limit-gib` (24 or 16 GiB: diffusers' leaf-level group
offload with VAE tiling), caps the allocator at that limit and times the engine again: s/step
against resident, peak RSS and VRAM.

    # full size on an H100 80 GB (one process per run: RSS peaks are per process)
    python benchmarks/wan_gpu.py --size 480 --steps 3 --out benchmarks/results/wan_480.json
    python benchmarks/wan_gpu.py --size 720 --steps 2 --out benchmarks/results/wan_720.json
    python benchmarks/wan_gpu.py --plan --vram-limit-gib 24 --steps 2 --out benchmarks/results/wan_plan24.json
    python benchmarks/wan_gpu.py --plan --vram-limit-gib 16 --steps 2 --out benchmarks/results/wan_plan16.json
    # CPU smoke run: tiny models of the same architecture through the same code paths
    python benchmarks/wan_gpu.py --tiny --plan --out /tmp/wan_tiny.json

Transformer: the config of diffusers' conversion script for "Wan-FLF2V-14B-720P" (40 layers,
40 heads × 128 = 5120, FFN 13824, 36 input channels, text 4096, image 1280, added K/V 5120,
`pos_embed_seq_len` 2 × 257, RoPE 1024). VAE: `AutoencoderKLWan()` (its defaults are Wan 2.1's
VAE). The UMT5-XXL text encoder (5.7 B) and CLIP ViT-H/14 image encoder (0.63 B) are built at full
depth (24 / 32 layers), so resident VRAM and the placements' host RAM are those of the real
weights; `--shallow-encoders` makes them 2-layer stand-ins with the real widths (they run once per
clip: the step times do not change, resident VRAM drops by ~10 GB). Dtypes are the
studio's (`wan_loading.dtypes_for`): transformer and text encoder bf16, VAE and CLIP fp32.
Scheduler: UniPC in flow mode, shift 3.0 at 480p and 5.0 at 720p (diffusers' Wan docs).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.framepack_gpu import Clock, RssSampler, frame_difference, save, vram_window  # noqa: E402

GIB = 1024**3
PROMPT = (
    "a woman with long dark hair turns slowly toward the camera and smiles while warm evening "
    "light falls across her face and the wind moves her hair gently; the camera pushes in "
    "slowly, shallow depth of field, soft film grain, the background city lights blur into "
    "bokeh as she looks up and laughs, natural skin tones, cinematic colour grading, calm mood"
)
PROMPT_WORDS = sorted(set(PROMPT.replace(",", " ").replace(";", " ").split()))
SIZES = {480: (480, 832), 720: (720, 1280)}
FLOW_SHIFT = {480: 3.0, 720: 5.0}
LORA_RANK = 64  # wan2.1_i2v_lora_rank64_lightx2v_4step

# diffusers scripts/convert_wan_to_diffusers.py, model_type "Wan-FLF2V-14B-720P".
FULL = dict(
    transformer=dict(
        patch_size=(1, 2, 2),
        num_attention_heads=40,
        attention_head_dim=128,
        in_channels=36,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=13824,
        num_layers=40,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
        image_dim=1280,
        added_kv_proj_dim=5120,
        rope_max_seq_len=1024,
        pos_embed_seq_len=257 * 2,
    ),
    vae=dict(),  # AutoencoderKLWan's defaults: Wan 2.1's VAE (base_dim 96, z_dim 16)
    # google/umt5-xxl's encoder; num_layers is the --shallow-encoders depth, umt5_full_layers the real one
    umt5=dict(
        vocab_size=256384,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=2,
        num_heads=64,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
    ),
    umt5_full_layers=24,
    # laion/CLIP-ViT-H-14-laion2B-s32B-b79K's vision tower; likewise 2 (stand-in) or 32 layers
    clip=dict(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=2,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        projection_dim=1024,
        hidden_act="gelu",
    ),
    clip_full_layers=32,
    clip_processor=dict(),  # CLIPImageProcessor's defaults: shortest edge 224, centre crop 224
)

# The tiny model of tests/helpers/tiny_wan.py (same architecture, CPU in seconds).
TINY = dict(
    transformer=dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,
        out_channels=16,
        text_dim=16,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        image_dim=4,
        added_kv_proj_dim=24,
        pos_embed_seq_len=2 * (4 * 4 + 1),
    ),
    vae=dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]),
    umt5=dict(
        vocab_size=len(PROMPT_WORDS) + 8,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
    ),
    umt5_full_layers=2,
    clip=dict(
        hidden_size=4,
        projection_dim=4,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=4,
        intermediate_size=16,
        patch_size=1,
    ),
    clip_full_layers=2,
    clip_processor=dict(crop_size=4, size=4),
)
TINY_JOB = dict(height=32, width=48, frames=9)


# --- building the pipeline without host copies of its weights ----------------------------------
@contextmanager
def parameters_on_meta():
    """Modules built inside get their parameters on the meta device (no memory, no init cost);
    buffers (RoPE tables, position ids) are built for real, with their values."""
    from torch import nn

    original = nn.Module.register_parameter

    def register(module, name, param):
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def materialize(module, device: str, dtype, std: float = 0.02):
    """Every meta parameter made real on `device` in `dtype`, filled there: 1-D weights (norm
    scales) 1, 1-D biases 0, everything else normal(0, std). Buffers move to `device` as built."""
    import torch
    from torch import nn

    with torch.no_grad():
        for sub in module.modules():
            for name, p in list(sub._parameters.items()):
                if p is None or not p.is_meta:
                    continue
                t = torch.empty(p.shape, device=device, dtype=dtype)
                if p.ndim == 1 and name == "weight":
                    t.fill_(1.0)
                elif p.ndim == 1 and name == "bias":
                    t.zero_()
                else:
                    t.normal_(0.0, std)
                sub._parameters[name] = nn.Parameter(t, requires_grad=False)
    module.to(device)
    module.eval()
    module.requires_grad_(False)
    return module


def _tokenizer(vocab_size: int):
    """UMT5's special tokens and the prompt's words, word-level, built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>"] + PROMPT_WORDS
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words)) if i < vocab_size}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=512
    )


def build_pipeline(spec: dict, device: str, size: int, full_encoders: bool = False):
    """The real `WanImageToVideoPipeline` classes with random weights, materialised on `device` in
    the studio's dtypes (`wan_loading.dtypes_for`)."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
        UMT5Config,
        UMT5EncoderModel,
    )

    from backend.pipeline.wan.wan_loading import dtypes_for

    dtypes = dtypes_for(device)
    default = dtypes["default"]
    umt5 = dict(spec["umt5"], num_layers=spec["umt5_full_layers"]) if full_encoders else spec["umt5"]
    clip = dict(spec["clip"], num_hidden_layers=spec["clip_full_layers"]) if full_encoders else spec["clip"]
    torch.manual_seed(0)
    with parameters_on_meta():
        transformer = WanTransformer3DModel(**spec["transformer"])
        vae = AutoencoderKLWan(**spec["vae"])
        text_encoder = UMT5EncoderModel(UMT5Config(**umt5))
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**clip))
    materialize(transformer, device, default)
    materialize(text_encoder, device, default)
    materialize(vae, device, dtypes.get("vae", default))
    materialize(image_encoder, device, dtypes.get("image_encoder", default))
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=FLOW_SHIFT.get(size, 3.0),
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=_tokenizer(spec["umt5"]["vocab_size"]),
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        image_processor=CLIPImageProcessor(**spec["clip_processor"]),
        image_encoder=image_encoder,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- the job and its timings --------------------------------------------------------------------
def make_job(height: int, width: int, frames: int, steps: int) -> dict:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    last = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return {
        "first": first,
        "last": last,
        "image_a": Image.fromarray(first),
        "image_b": Image.fromarray(last),
        "height": height,
        "width": width,
        "frames": frames,
        "steps": steps,
    }


def summarize(start: float, stamps: list[float], decode: list[float], end: float) -> dict:
    """s/step from consecutive step ends (the first step, which follows the encoders, excluded:
    its time is in `first_step_s`), time before the first step, decode and total."""
    diffs = [b - a for a, b in zip(stamps, stamps[1:])]
    warm = sorted(diffs)
    return {
        "steps": len(stamps),
        "s_per_step": warm[len(warm) // 2] if warm else None,
        "s_per_step_mean": sum(diffs) / len(diffs) if diffs else None,
        "steps_timed": len(diffs),
        "first_step_s": stamps[0] - start if stamps else None,  # encoders + setup + step 1
        "decode_s": (decode[1] - decode[0]) if len(decode) == 2 else None,
        "after_steps_s": end - stamps[-1] if stamps else None,  # decode + post-processing
        "total_s": end - start,
    }


@contextmanager
def decode_clock(vae, clock: Clock):
    """Timestamps around the pipeline's `vae.decode` call."""
    box: list[float] = []
    original = vae.decode

    def decode(*args, **kwargs):
        box.append(clock.now())
        out = original(*args, **kwargs)
        box.append(clock.now())
        return out

    vae.decode = decode
    try:
        yield box
    finally:
        del vae.decode


def run_reference(pipe, job: dict, clock: Clock, cuda: bool, guidance: float = 5.0) -> dict:
    """The plain diffusers pipeline on the job, timed by its step callback."""
    import torch

    stamps: list[float] = []

    def on_step(_pipe, _i, _t, kwargs):
        stamps.append(clock.now())
        return kwargs

    with vram_window(cuda) as vram, decode_clock(pipe.vae, clock) as dec, torch.no_grad():
        start = clock.now()
        out = pipe(
            image=job["image_a"],
            last_image=job["image_b"],
            prompt=PROMPT,
            height=job["height"],
            width=job["width"],
            num_frames=job["frames"],
            num_inference_steps=job["steps"],
            guidance_scale=guidance,
            generator=torch.Generator("cpu").manual_seed(1),
            callback_on_step_end=on_step,
            output_type="np",
        ).frames[0]
        end = clock.now()
    assert out.shape[0] == job["frames"], out.shape
    result = summarize(start, stamps, dec, end)
    result.update(vram)
    return result


def run_ours(
    engine, job: dict, clock: Clock, cuda: bool, fast: bool = False, steps: int | None = None, keep: dict | None = None
) -> dict:
    """The studio's engine on the job (its `generate`, as a job's transition calls it); the frames
    go to `keep["frames"]` when asked (the levers' error against eager)."""
    from backend.pipeline.wan import wan_spec as spec
    from backend.utils.progress import Progress

    stamps: list[float] = []

    def progress(p: Progress) -> None:
        if "step" in p.detail:
            stamps.append(clock.now())

    segment = {"frames": job["frames"], "seed": 1}
    params = {
        "steps": steps or job["steps"],
        "guidance": spec.FAST_GUIDANCE if fast else spec.GUIDANCE,
        "fast": fast,
    }
    with vram_window(cuda) as vram, decode_clock(engine.pipe.vae, clock) as dec:
        start = clock.now()
        frames = engine.generate(job["first"], job["last"], PROMPT, segment, params, progress)
        end = clock.now()
    assert frames.shape == (job["frames"], job["height"], job["width"], 3), frames.shape
    if keep is not None:
        keep["frames"] = frames
    result = summarize(start, stamps, dec, end)
    result.update(vram, frames=int(frames.shape[0]), fast=fast)
    return result


def frame_error(frames, reference) -> dict:
    """How far a lever's uint8 frames are from the eager engine's (same seed and job)."""
    return {**frame_difference(frames, reference), "identical": bool((frames == reference).all())}


def time_encoders(pipe, job: dict, clock: Clock, device: str) -> dict:
    """Seconds of the prompt encode (with the empty negative prompt, as guidance > 1 runs it) and
    of the two-image CLIP encode, where the pipeline runs them."""
    import torch

    with torch.no_grad():
        began = clock.now()
        pipe.encode_prompt(prompt=PROMPT, negative_prompt="", do_classifier_free_guidance=True, device=device)
        text = clock.now() - began
        began = clock.now()
        pipe.encode_image([job["image_a"], job["image_b"]], device=torch.device(device))
        image = clock.now() - began
    return {"text_encode_s": text, "image_encode_s": image}


def attempt(result: dict, key: str, out: Path | None, fn, rss: RssSampler | None = None):
    """Runs one measure; an error (an OOM at 720p, say) is written down and the run goes on."""
    if rss is not None:
        rss.reset()
    try:
        value = fn()
    except Exception as exc:
        value = {"error": repr(exc)[:800], "traceback": traceback.format_exc()[-2000:]}
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
    if rss is not None and isinstance(value, dict):
        value["peak_rss_gib"] = rss.peak / GIB
        value["peak_rss_anon_gib"] = rss.peak_anon / GIB
    result[key] = value
    save(result, out)
    return value


def disk_reads() -> int | None:
    """Bytes this process has read from storage so far (Linux /proc/self/io), or None."""
    try:
        import psutil

        return psutil.Process().io_counters().read_bytes
    except Exception:
        return None


def cgroup_memory_limit_gib() -> float | None:
    """This process's memory-cgroup limit (page cache included; v2 memory.max or v1
    memory.limit_in_bytes), or None when unlimited or unknown: `benchmarks/with_memory_limit.sh`
    sets it to stand in for a 32 GB machine."""
    root = Path("/sys/fs/cgroup")
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                file = root / path.lstrip("/") / "memory.max"
            elif "memory" in controllers.split(","):
                file = root / "memory" / path.lstrip("/") / "memory.limit_in_bytes"
            else:
                continue
            if file.is_file():
                value = file.read_text().strip()
                if value != "max" and int(value) < 2**60:
                    return int(value) / GIB
    except (OSError, ValueError):
        pass
    return None


def ratio(a: dict, b: dict, key: str):
    x, y = a.get(key) if isinstance(a, dict) else None, b.get(key) if isinstance(b, dict) else None
    return x / y if x and y else None


def cap_vram(gib: float) -> float:
    """Caps the caching allocator as the studio's STUDIO_VRAM_LIMIT_GIB would for FramePack: a
    smaller GPU from here on."""
    import torch

    from backend.pipeline.framepack.residency import allocator_cap_gib

    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    cap = allocator_cap_gib(gib)
    torch.cuda.set_per_process_memory_fraction(cap * GIB / total)
    return cap


def table(result: dict) -> str:
    """The figures that matter, one row per run."""
    rows = [("run", "s/step", "first step s", "decode s", "total s", "VRAM alloc GiB", "VRAM resv GiB", "RSS GiB")]

    def fmt(v, digits=3):
        return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))

    for key in (
        "reference_first_job",
        "reference",
        "ours",
        "ours_compiled_first_job",
        "ours_compiled",
        "ours_fp8_first_job",
        "ours_fp8",
        "fast_first_clip",
        "fast",
        "fast_fp8_first",
        "fast_fp8",
        "plan",
    ):
        r = result.get(key)
        if not isinstance(r, dict):
            continue
        if "error" in r:
            rows.append((key, "error: " + r["error"][:60], "", "", "", "", "", ""))
            continue
        rows.append(
            (
                key,
                fmt(r.get("s_per_step")),
                fmt(r.get("first_step_s")),
                fmt(r.get("decode_s")),
                fmt(r.get("total_s")),
                fmt(r.get("peak_allocated_gib"), 2),
                fmt(r.get("peak_reserved_gib"), 2),
                fmt(r.get("peak_rss_gib"), 2),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    for name, value in result.get("ratios", {}).items():
        lines.append(f"{name}: {fmt(value)}")
    return "\n".join(lines)


# --- the run -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny models of the same architecture, on the CPU")
    ap.add_argument("--size", type=int, default=480, choices=sorted(SIZES), help="480 (480×832) or 720 (720×1280)")
    ap.add_argument("--frames", type=int, default=81, help="frames per clip, 4k+1 (the model's 81)")
    ap.add_argument("--steps", type=int, default=3, help="steps of the timed full-quality jobs (≥ 2)")
    ap.add_argument("--shallow-encoders", action="store_true", help="2-layer UMT5/CLIP stand-ins (real widths)")
    ap.add_argument("--no-reference", action="store_true", help="skip the plain pipeline (a)")
    ap.add_argument("--no-fast", action="store_true", help="skip the fast mode (c)")
    ap.add_argument("--fast-runs", type=int, default=0, help="fast-mode clips (default: 2 on the GPU, 1 tiny)")
    ap.add_argument("--no-first-job", action="store_true", help="skip the plain pipeline's apart-reported first job")
    ap.add_argument(
        "--no-eager", action="store_true", help="skip the engine with eager blocks (b), time it compiled only"
    )
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled blocks (STUDIO_WAN_COMPILE)")
    ap.add_argument("--fp8", action="store_true", help="last, the blocks' linears as FP8 (accel.Fp8Linear), compiled")
    ap.add_argument("--plan", action="store_true", help="then the engine under its placement for --vram-limit-gib")
    ap.add_argument("--vram-limit-gib", type=float, default=24.0, help="the GPU --plan simulates (24 or 16)")
    ap.add_argument(
        "--ram-gib", type=float, default=None, help="the host RAM --plan's rule sees (32: layers stream from disk)"
    )
    ap.add_argument(
        "--offload-weights",
        default="auto",
        choices=["auto", "bf16", "fp8"],
        help="STUDIO_OFFLOAD_WEIGHTS for --plan (auto: int8 layers on the disk placement, bf16 in RAM)",
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON file to write (after every measure)")
    args = ap.parse_args(argv)

    import torch

    from backend.pipeline.wan import wan_spec
    from backend.pipeline.wan.wan_engine import WanEngine
    from backend.pipeline.wan.wan_loading import placement_for
    from backend.utils.config import Settings
    from backend.utils.model_registry import wan_lora_path

    if args.fp8 and args.plan:
        ap.error("--fp8 replaces the linears: run --plan in a process of its own")
    if not wan_spec.is_frame_count(args.frames):
        ap.error(f"--frames must be 4k+1, not {args.frames}")
    rss = RssSampler()
    cuda = not args.tiny and torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    spec = FULL if cuda else TINY
    if cuda:
        height, width = SIZES[args.size]
        frames = args.frames
    else:
        height, width, frames = TINY_JOB["height"], TINY_JOB["width"], TINY_JOB["frames"]
    steps = max(2, args.steps)
    fast_runs = args.fast_runs or (2 if cuda else 1)
    result: dict = {
        "command": "python benchmarks/wan_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "models": "full-size random" if cuda else "tiny",
        "encoders": "shallow stand-ins (real widths)" if args.shallow_encoders else "full depth",
        "size": [height, width],
        "frames": frames,
        "steps": steps,
        "flow_shift": FLOW_SHIFT.get(args.size, 3.0),
    }
    try:
        import diffusers
        import transformers

        result["diffusers"], result["transformers"] = diffusers.__version__, transformers.__version__
    except Exception:
        pass
    if cuda:
        result["gpu_total_gib"] = torch.cuda.get_device_properties(0).total_memory / GIB
    clock = Clock(cuda)
    models = Path(tempfile.mkdtemp(prefix="wan-bench-models-"))
    # The engine attaches with eager blocks; the compile lever (below) then compiles the same modules.
    settings = Settings(
        models_dir=models,
        device=device,
        vram_limit_gib=args.vram_limit_gib if args.plan else 0.0,
        wan_compile="off",
        offload_weights=args.offload_weights,
    )

    began = time.perf_counter()
    pipe = build_pipeline(spec, device, args.size, full_encoders=not args.shallow_encoders)
    result["build_s"] = time.perf_counter() - began
    result["build_peak_rss_gib"] = rss.peak / GIB
    result["params"] = {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("transformer", "text_encoder", "image_encoder", "vae")
    }
    if cuda:
        result["resident_allocated_gib"] = torch.cuda.memory_allocated() / GIB
    save(result, args.out)
    job = make_job(height, width, frames, steps)

    # (a) the plain pipeline, before the studio touches the modules (no LoRA hooks yet).
    if not args.no_reference:
        if cuda and not args.no_first_job:
            attempt(result, "reference_first_job", args.out, lambda: run_reference(pipe, job, clock, cuda), rss)
        attempt(result, "reference", args.out, lambda: run_reference(pipe, job, clock, cuda), rss)
        attempt(result, "encoders", args.out, lambda: time_encoders(pipe, job, clock, device))

    # The fast mode's LoRA file where the studio looks for it, then the engine's own attach().
    t: dict = spec["transformer"]  # type: ignore[assignment]
    inner = t["num_attention_heads"] * t["attention_head_dim"]
    if not args.no_fast:
        from tests.helpers.tiny_wan import write_lightx2v_lora

        began = time.perf_counter()
        write_lightx2v_lora(
            wan_lora_path(settings),
            layers=t["num_layers"],
            inner=inner,
            ffn=t["ffn_dim"],
            rank=LORA_RANK if cuda else 4,
            device=device,
            dtype=torch.bfloat16 if cuda else torch.float32,
        )
        result["lora_write_s"] = time.perf_counter() - began
    engine = WanEngine(settings)
    rss.reset()
    began = time.perf_counter()
    engine.attach(pipe, device, "resident" if cuda else "cpu", "benchmark")
    result["attach_s"] = time.perf_counter() - began
    result["attach_peak_rss_gib"] = rss.peak / GIB
    result["lora_layers"] = engine.lora.layers if engine.lora is not None else 0
    save(result, args.out)

    # (b) the studio's engine on the same job: blocks eager, then compiled as the studio runs them
    # resident on CUDA (STUDIO_WAN_COMPILE=auto); (c) the fast mode end to end.
    eager: dict = {}
    compiled: dict = {}
    if not args.no_eager:
        attempt(result, "ours", args.out, lambda: run_ours(engine, job, clock, cuda, keep=eager), rss)
    if cuda and not args.no_compile:
        engine.settings = settings.model_copy(update={"wan_compile": "on"})
        began = time.perf_counter()
        engine.compiled = engine._compile()
        result["compile_setup_s"] = time.perf_counter() - began
        for key in ("ours_compiled_first_job", "ours_compiled"):
            attempt(result, key, args.out, lambda: run_ours(engine, job, clock, cuda, keep=compiled), rss)
        if "frames" in eager and "frames" in compiled:
            result["ours_compiled"]["error_vs_eager"] = frame_error(compiled["frames"], eager["frames"])
        if args.no_eager:
            result["ours"] = result["ours_compiled"]  # the studio's default, for the ratios below

    def fast_clips(keys) -> None:
        for key in keys:
            attempt(
                result,
                key,
                args.out,
                lambda: run_ours(engine, job, clock, cuda, fast=True, steps=wan_spec.FAST_STEPS),
                rss,
            )

    if not args.no_fast:
        fast_clips(["fast_first_clip"] * (fast_runs - 1) + ["fast"])

    # FP8 matmuls in the blocks (STUDIO_FP8_MATMUL, opt-in for both engines), through the loader's own
    # step on the same modules; the fast mode's LoRA hooks move onto the FP8 layers. Last: it
    # replaces the linears.
    if cuda and args.fp8:

        def to_fp8() -> dict:
            began = time.perf_counter()
            engine.settings = engine.settings.model_copy(update={"fp8_matmul": True})
            engine.fp8_matmul = engine._fp8()
            return {"converted": engine.fp8_matmul, "convert_s": time.perf_counter() - began}

        attempt(result, "fp8_convert", args.out, to_fp8)
        fp8: dict = {}
        for key in ("ours_fp8_first_job", "ours_fp8"):
            attempt(result, key, args.out, lambda: run_ours(engine, job, clock, cuda, keep=fp8), rss)
        base = compiled if "frames" in compiled else eager
        if "frames" in fp8 and "frames" in base and isinstance(result.get("ours_fp8"), dict):
            result["ours_fp8"]["error_vs_bf16"] = frame_error(fp8["frames"], base["frames"])
        if not args.no_fast and engine.lora is not None:
            fast_clips(["fast_fp8_first", "fast_fp8"])

    ratios = result.setdefault("ratios", {})
    if "reference" in result:
        for key in ("s_per_step", "first_step_s", "total_s", "peak_allocated_gib", "peak_reserved_gib"):
            ratios[f"ours/reference {key}"] = ratio(result.get("ours", {}), result["reference"], key)
            for lever in ("ours_compiled", "ours_fp8"):
                if isinstance(result.get(lever), dict):
                    ratios[f"{lever}/reference {key}"] = ratio(result[lever], result["reference"], key)
    if isinstance(result.get("fast"), dict) and "total_s" in result["fast"] and "s_per_step" in result.get("ours", {}):
        ours = result["ours"]
        # A full-quality clip at the slider's ends, from the measured step and fixed costs.
        fixed = (ours["total_s"] or 0) - (ours["s_per_step"] or 0) * steps
        result["projected_clip_s"] = {
            f"{n}_steps": fixed + n * ours["s_per_step"] for n in (wan_spec.MIN_FULL_STEPS, wan_spec.FULL_STEPS)
        }
        result["projected_clip_s"]["fast_measured"] = result["fast"]["total_s"]
        ratios["fast clip / 40-step clip"] = result["fast"]["total_s"] / result["projected_clip_s"]["40_steps"]
    save(result, args.out)

    # --plan: the same modules under the placement the studio picks for the smaller GPU.
    if args.plan:
        from backend.utils.model_registry import WAN21

        placement = (
            placement_for(
                "cuda", args.vram_limit_gib, ram_gib=args.ram_gib, pinned_ram_min_gib=WAN21.pinned_ram_min_gib
            )
            if cuda
            else ("group_offload_disk" if args.ram_gib else "cpu")
        )
        result["plan_placement"] = placement

        def planned() -> dict:
            for t in engine.transformers():  # eager blocks, as the studio's placement runs them
                for m in t.modules():
                    m._compiled_call_impl = None
            engine.release()  # drops the studio's hold (and the LoRA hooks); `pipe` is still ours
            rss.reset()
            began = time.perf_counter()
            engine.attach(pipe, device, placement, f"plan {args.vram_limit_gib} GiB")
            place_s = time.perf_counter() - began
            place_rss, place_anon = rss.peak / GIB, rss.peak_anon / GIB
            cap = cap_vram(args.vram_limit_gib) if cuda else None
            rss.reset()
            io = disk_reads()
            frames: dict = {}
            out = run_ours(engine, job, clock, cuda, keep=frames)
            # Bytes the storage delivered (page-cache hits are not counted): what a machine whose
            # RAM cannot cache the layer files reads per job.
            read_gib = (disk_reads() - io) / GIB if io is not None else None
            out.update(
                placement=placement,
                place_s=place_s,
                place_peak_rss_gib=place_rss,
                # RSS less its shared pages (psutil's `shared`: file-backed mappings such as
                # the layer files safetensors maps while reading them)
                place_peak_rss_anon_gib=place_anon,
                allocator_cap_gib=cap,
                disk_read_gib=read_gib,
                memory_limit_gib=cgroup_memory_limit_gib(),
                stored_8bit=engine.stored_8bit,
            )
            if "frames" in frames and "frames" in eager:  # 8-bit layers are not exact: how far
                out["error_vs_resident"] = frame_error(frames["frames"], eager["frames"])
            return out

        plan = attempt(result, "plan", args.out, planned)
        plan["peak_rss_gib"] = max(plan.get("place_peak_rss_gib", 0.0), rss.peak / GIB)
        plan["peak_rss_anon_gib"] = max(plan.get("place_peak_rss_anon_gib", 0.0), rss.peak_anon / GIB)
        ratios["plan/resident s_per_step"] = ratio(plan, result["ours"], "s_per_step")
        ratios["plan/resident total_s"] = ratio(plan, result["ours"], "total_s")
    rss.stop()
    result["peak_rss_gib_process"] = max(
        [result.get("build_peak_rss_gib", 0.0)]
        + [r.get("peak_rss_gib", 0.0) for r in result.values() if isinstance(r, dict)]
    )
    save(result, args.out)
    print(json.dumps(result, indent=2, default=str))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
