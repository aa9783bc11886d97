"""Speed and memory of the studio's FramePack generator against the plain diffusers pipeline.

No weights can be downloaded, but time and memory depend only on shapes: this builds the models of
the REAL size with random weights (directly on the GPU, in bf16), runs the plain
`HunyuanVideoFramepackPipeline` and then the studio's `FramePackEngine` on the same job in one
process, and prints/writes: s/step, s/section, time to first section preview, peak VRAM (allocated
and reserved), peak host RSS, FLOPs per forward (FlopCounterMode), MFU, and ours/reference ratios;
plus VRAM growth from 1 to N sections, the fast mode (MagCache, `magcache_speed.py`) at each
threshold and step count, s/step without the per-step sync, the attention kernels on the job's
shapes and, opt-in, FP8 matmuls with their error against bf16.

    # full size, resident, on an H100/H200 (one process per memory mode: RSS peaks are per process)
    python benchmarks/framepack_gpu.py --mode resident --reference --growth-sections 20 --magcache --no-sync --attention --fp8-matmul
    python benchmarks/framepack_gpu.py --mode offload --vram-limit-gib 6 --reference
    # CPU smoke run with tiny models of the same architecture (CI keeps the script working)
    python benchmarks/framepack_gpu.py --tiny --reference --growth-sections 3 --magcache --no-sync --attention

Text/image encoders are shallow stand-ins with the real output widths (they run once per job);
`--full-text-encoder` builds the Llama-3-8B-sized encoder (32 layers) for host-RAM measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.framepack_models import FULL_SPEC, build_pipeline  # noqa: E402

GIB = 1024**3
H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM (datasheet), the MFU basis
PROMPT = (
    "a woman with long dark hair turns slowly toward the camera and smiles while warm evening "
    "light falls across her face and the wind moves her hair gently; the camera pushes in "
    "slowly, shallow depth of field, soft film grain, the background city lights blur into "
    "bokeh as she looks up and laughs, natural skin tones, cinematic colour grading, calm mood"
)
# The random models' tokenizers know the prompt's words (word-level, built in memory).
PROMPT_WORDS = sorted(set(PROMPT.replace(",", " ").replace(";", " ").split()))
FULL = {**FULL_SPEC, "words": PROMPT_WORDS}


TINY = dict(
    transformer=dict(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        rope_axes_dim=(2, 2, 4),
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        text_embed_dim=16,
        pooled_projection_dim=8,
        has_image_proj=True,
        image_proj_dim=16,
        has_clean_x_embedder=True,
        guidance_embeds=True,
    ),
    vae=dict(
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        mid_block_add_attention=False,
    ),
    llama=dict(
        vocab_size=512,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    ),
    llama_full_layers=3,
    clip=dict(
        vocab_size=512,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=8,
    ),
    siglip=dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    ),
    words=PROMPT_WORDS,
)


# --- measuring ---------------------------------------------------------------------------------
class RssSampler:
    """Peak resident set size of this process, sampled every 50 ms on a thread.

    `peak` is the whole RSS; `peak_anon` leaves out file-backed pages (RSS minus shared: mapped
    checkpoint files, libraries), which the kernel can drop under pressure.
    """

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        info = self._proc.memory_info()
        self.peak, self.peak_anon = info.rss, info.rss - info.shared
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def sample(self) -> int:
        info = self._proc.memory_info()
        self.peak = max(self.peak, info.rss)
        self.peak_anon = max(self.peak_anon, info.rss - info.shared)
        return info.rss

    def reset(self) -> None:
        info = self._proc.memory_info()
        self.peak, self.peak_anon = info.rss, info.rss - info.shared

    def stop(self) -> None:
        self._stop.set()


class Clock:
    """Host timestamps after a device sync, so they bracket finished GPU work."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()


@contextmanager
def vram_window(cuda: bool):
    """Peak allocated/reserved inside the block, starting from an emptied cache."""
    import torch

    box: dict = {}
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        box["start_allocated_gib"] = torch.cuda.memory_allocated() / GIB
    yield box
    if cuda:
        torch.cuda.synchronize()
        box["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        box["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB


def summarize(step_times: list[list[float]], section_ends: list[float], start: float, steps: int) -> dict:
    """s/step (warm: the job's first step excluded), s/section and time to first section preview."""
    durations = []
    for stamps in step_times:
        diffs = [b - a for a, b in zip(stamps, stamps[1:])]
        durations.extend(diffs)  # within-section steps; the first of each section follows setup
    warm = sorted(durations)
    s_step = warm[len(warm) // 2] if warm else None
    bounds = [start] + section_ends
    sections = [b - a for a, b in zip(bounds, bounds[1:])]
    return {
        "s_per_step": s_step,
        "steps_timed": len(durations),
        "s_per_section_measured": sections,
        "s_per_section_at_25_steps": (25 * s_step + (sections[-1] - steps * s_step)) if s_step and sections else None,
        "first_section_s": section_ends[0] - start if section_ends else None,
        # FramePack's default is 25 steps: the same first section with the steps not run added.
        "first_section_s_at_25_steps": (section_ends[0] - start + (25 - steps) * s_step)
        if section_ends and s_step
        else None,
    }


def run_reference(pipe, job: dict, clock: Clock, cuda: bool) -> dict:
    """The plain diffusers pipeline on the job, timed by its step callback and a vae.decode wrapper."""

    stamps: list[list[float]] = [[]]
    section_ends: list[float] = []
    original = pipe.vae.decode

    def decode(*args, **kwargs):
        out = original(*args, **kwargs)
        section_ends.append(clock.now())
        stamps.append([])
        return out

    def on_step(_pipe, i, _t, _kw):
        stamps[-1].append(clock.now())
        return {}

    pipe.vae.decode = decode
    try:
        with vram_window(cuda) as vram:
            start = clock.now()
            pipe(**plain_call(job, job["sections"], job["steps"]), callback_on_step_end=on_step)
            end = clock.now()
    finally:
        del pipe.vae.decode
    out = summarize([s for s in stamps if s], section_ends, start, job["steps"])
    out.update(vram, total_s=end - start)
    return out


def run_ours(
    generator,
    job: dict,
    clock: Clock,
    cuda: bool,
    sections: int | None = None,
    steps: int | None = None,
    cache: str = "off",
) -> dict:
    from backend.utils.progress import Progress

    sections = sections or job["sections"]
    steps = steps or job["steps"]
    stamps: list[list[float]] = [[] for _ in range(sections)]
    section_ends: list[float] = []

    def progress(p: Progress) -> None:
        d = p.detail
        if "preview_frames" in d:
            section_ends.append(clock.now())
        elif "step" in d:
            stamps[d["section"] - 1].append(clock.now())

    segment, params = engine_request(job, sections, steps, cache)
    with vram_window(cuda) as vram:
        start = clock.now()
        frames = generator.generate(job["first"], job["last"], PROMPT, segment, params, progress)
        end = clock.now()
    expected = sections * job["window"] * 4 + 1
    assert frames.shape == (expected, job["height"], job["width"], 3), frames.shape
    out = summarize(stamps, section_ends, start, steps)
    out.update(vram, total_s=end - start, frames=int(frames.shape[0]))
    return out


def capture_forward_kwargs(pipe, job: dict):
    """The transformer's kwargs of one real step (from a 1-section, 1-step pipeline call)."""
    import torch

    box = {}

    def grab(_m, args, kwargs):
        box.setdefault("kwargs", {k: v for k, v in kwargs.items()})
        raise StopIteration  # no need to run the model

    handle = pipe.transformer.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        pipe(
            image=job["image_a"],
            last_image=job["image_b"],
            prompt=PROMPT,
            height=job["height"],
            width=job["width"],
            num_frames=(job["window"] - 1) * 4 + 1,
            latent_window_size=job["window"],
            num_inference_steps=1,
            guidance_scale=10.0,
            sampling_type="inverted_anti_drifting",
            generator=torch.Generator("cpu").manual_seed(1),
            output_type="latent",
        )
    except StopIteration:
        pass
    finally:
        handle.remove()
    return box["kwargs"]


def count_flops(transformer, kwargs) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        transformer(**kwargs)
    return float(counter.get_total_flops())


def tokens_per_forward(transformer, kwargs) -> int:
    p = transformer.config.patch_size
    lat = kwargs["hidden_states"].shape
    tokens = lat[2] * (lat[3] // p) * (lat[4] // p)
    clean = kwargs["latents_clean"].shape
    tokens += clean[2] * (clean[3] // p) * (clean[4] // p)
    h2 = kwargs["latents_history_2x"].shape
    tokens += -(-h2[2] // 2) * -(-h2[3] // 4) * -(-h2[4] // 4)
    h4 = kwargs["latents_history_4x"].shape
    tokens += -(-h4[2] // 4) * -(-h4[3] // 8) * -(-h4[4] // 8)
    tokens += kwargs["image_embeds"].shape[1] + int(kwargs["encoder_attention_mask"].sum())
    return int(tokens)


def fp8_error(transformer, kwargs) -> dict:
    """Relative error of the transformer output with FP8 linears against bf16, on one real input."""
    import torch

    from backend.pipeline.framepack import accel

    with torch.no_grad():
        ref = transformer(**kwargs)[0].float()
        count = accel.convert_fp8_linears(transformer)
        out = transformer(**kwargs)[0].float()
    rel = float((out - ref).norm() / ref.norm())
    return {
        "converted_linears": count,
        "rel_l2_error_vs_bf16": rel,
        "max_abs_error": float((out - ref).abs().max()),
        "ref_rms": float(ref.pow(2).mean().sqrt()),
    }


def fp16_error(transformer, kwargs) -> dict:
    """The transformer's output in bf16 and in the studio's fp16 (autocast, fp32 residual stream)
    against an fp32 reference, on one real-shaped input. The model ends as it began."""
    import torch

    from backend.pipeline.framepack.compute_dtype import ComputePolicy, keep_stream_fp32

    def cast(dtype):
        return {
            k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in kwargs.items()
        }

    device_type = next(transformer.parameters()).device.type
    original = transformer.dtype
    with torch.no_grad():
        transformer.to(torch.bfloat16)
        bf16 = transformer(**cast(torch.bfloat16))[0].float()
        transformer.to(torch.float32)
        ref = transformer(**cast(torch.float32))[0].float()
        transformer.to(torch.float16)
        handles = keep_stream_fp32(transformer)
        with ComputePolicy("fp16", device_type).context():
            fp16 = transformer(**cast(torch.float16))[0].float()
        for h in handles:
            h.remove()
        # Plain fp16 (no fp32 stream), for what the stream buys.
        plain = transformer(**cast(torch.float16))[0].float()
        transformer.to(original)
    torch.cuda.empty_cache()

    def err(x):
        return {
            "rel_l2_vs_fp32": float((x - ref).norm() / ref.norm()),
            "max_abs": float((x - ref).abs().max()),
            "finite": bool(torch.isfinite(x).all()),
        }

    return {
        "fp16_fp32_stream": err(fp16),
        "bf16": err(bf16),
        "fp16_plain": err(plain),
        "ref_rms": float(ref.pow(2).mean().sqrt()),
        "ref_max_abs": float(ref.abs().max()),
    }


def storage_error(transformer, kwargs, min_numel: int) -> dict:
    """Output error of 8-bit weight storage against bf16 on one real input, for each format.

    The bf16 layers are swapped out and back, so the model is unchanged afterwards.
    """
    import torch
    from torch import nn

    from backend.pipeline.framepack.weight_storage import StoredLinear8

    targets = [
        (parent, name, child)
        for parent in transformer.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear and child.weight.numel() >= min_numel
    ]
    out: dict = {"converted_linears": len(targets)}
    with torch.no_grad():
        ref = transformer(**kwargs)[0].float()
        for fmt in ("fp8", "int8"):
            try:
                for parent, name, child in targets:
                    setattr(parent, name, StoredLinear8.from_linear(child, fmt))
                got = transformer(**kwargs)[0].float()
                out[fmt] = {
                    "rel_l2_error_vs_bf16": float((got - ref).norm() / ref.norm()),
                    "max_abs_error": float((got - ref).abs().max()),
                }
            finally:
                for parent, name, child in targets:
                    setattr(parent, name, child)
    out["ref_rms"] = float(ref.pow(2).mean().sqrt())
    return out


def time_text_encode(gen, clock: Clock) -> float:
    """Seconds to encode the prompt where the job does it (from disk in offload mode)."""
    import torch

    from backend.pipeline.framepack.loop import _StayPut

    placement = gen.placement or _StayPut()
    began = clock.now()
    with torch.no_grad():
        placement.encoders_on()
        try:
            gen.pipe.encode_prompt(prompt=PROMPT, device=torch.device(gen.device))
        finally:
            placement.encoders_off()
    return clock.now() - began


def no_sync_steps(gen, job: dict, clock: Clock, result: dict) -> dict:
    """s/step with no device sync at each step: two 1-section jobs of different step counts, timed
    only at their ends (the preview copy syncs), so the difference is pure steps."""
    from benchmarks.magcache_speed import run_job

    few, many = (2, 10) if job["height"] > 64 else (1, 3)
    _, ends_few = run_job(gen, job, clock, few, 1, "off", PROMPT)
    _, ends_many = run_job(gen, job, clock, many, 1, "off", PROMPT)
    s_step = (ends_many[0] - ends_few[0]) / (many - few)
    out = {"steps": [few, many], "section_s": [ends_few[0], ends_many[0]], "s_per_step": s_step}
    synced = result.get("ours", {}).get("s_per_step")
    if synced:
        out["vs_synced_s_per_step"] = s_step / synced
    ref = result.get("reference", {}).get("s_per_step")
    if ref:
        out["ratio_vs_reference"] = s_step / ref
    flops = result.get("flops_per_forward")
    if flops and job["height"] > 64:
        out["mfu_vs_989"] = flops / s_step / H100_BF16_PEAK
    return out


def joint_tokens(transformer, kwargs, size: int) -> int:
    """Tokens of one forward at a `size`² bucket with the captured job's window, history and prompt."""
    p, s_scale = transformer.config.patch_size, 8
    lat = kwargs["hidden_states"].shape
    edge = size // s_scale
    h = w = edge // p
    tokens = lat[2] * h * w + kwargs["latents_clean"].shape[2] * h * w
    tokens += -(-kwargs["latents_history_2x"].shape[2] // 2) * (-(-edge // 4)) ** 2
    tokens += -(-kwargs["latents_history_4x"].shape[2] // 4) * (-(-edge // 8)) ** 2
    return int(tokens + kwargs["image_embeds"].shape[1] + int(kwargs["encoder_attention_mask"].sum()))


def attention_kernels(transformer, kwargs, cuda: bool, sizes=(640, 480)) -> dict:
    """Each SDPA kernel (and PyTorch's own choice) on the joint attention shape of each bucket
    (image + history + text tokens, the model's heads): per call and times the blocks of one
    forward; plus the attention kernels the compiled blocks actually ran in one forward."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    c = transformer.config
    dtype = torch.bfloat16 if cuda else torch.float32
    device = "cuda" if cuda else "cpu"
    layers = c.num_layers + c.num_single_layers
    backends = (
        {
            "default": None,
            "flash": SDPBackend.FLASH_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
        }
        if cuda
        else {"default": None, "math": SDPBackend.MATH}
    )
    result: dict = {"heads": c.num_attention_heads, "head_dim": c.attention_head_dim}
    for size in sizes if cuda else (None,):
        tokens = joint_tokens(transformer, kwargs, size) if size else tokens_per_forward(transformer, kwargs)
        q, k, v = (
            torch.randn(1, c.num_attention_heads, tokens, c.attention_head_dim, device=device, dtype=dtype)
            for _ in range(3)
        )
        flops = 4 * tokens * tokens * c.attention_head_dim * c.num_attention_heads
        out: dict = {"tokens": tokens}
        reference = None
        for name, backend in backends.items():
            try:
                chosen = sdpa_kernel([backend]) if backend is not None else contextlib.nullcontext()
                with chosen, torch.no_grad():
                    y = F.scaled_dot_product_attention(q, k, v)
                    reps = 10 if cuda else 2
                    if cuda:
                        torch.cuda.synchronize()
                    began = time.perf_counter()
                    for _ in range(reps):
                        F.scaled_dot_product_attention(q, k, v)
                    if cuda:
                        torch.cuda.synchronize()
                    per_call = (time.perf_counter() - began) / reps
                if reference is None:
                    reference = y.float()
                out[name] = {
                    "s_per_call": per_call,
                    "s_per_forward_all_blocks": per_call * layers,
                    "tflops": flops / per_call / 1e12,
                    "rel_l2_vs_default": float((y.float() - reference).norm() / reference.norm()),
                }
            except Exception as exc:  # a kernel this GPU or shape does not support
                out[name] = {"error": repr(exc)[:300]}
        result[str(size or "job")] = out
        del q, k, v
    if cuda:
        result["compiled_forward_attention_kernels"] = profiled_attention(transformer, kwargs)
    return result


def profiled_attention(transformer, kwargs) -> list:
    """The attention kernels one (compiled) transformer forward ran: name, calls, device seconds."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        transformer(**kwargs)  # warm
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            transformer(**kwargs)
            torch.cuda.synchronize()
    rows = []
    for evt in prof.key_averages():
        name = evt.key
        if any(w in name.lower() for w in ("fmha", "flash", "cudnn", "attention", "sdpa", "attn")):
            total = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0)
            rows.append({"kernel": name[:160], "calls": evt.count, "device_s": total / 1e6})
    return sorted(rows, key=lambda r: -r["device_s"])[:6]


def cudagraph_blocks(gen, pipe, job: dict, clock: Clock, cuda: bool, result: dict) -> dict:
    """Experiment: each block compiled with CUDA graphs (`reduce-overhead`, static shapes of the
    job's bucket), one graph step marked per transformer forward; s/step against the same job."""
    import torch

    from backend.pipeline.framepack import accel

    t = pipe.transformer
    blocks = accel.blocks(t)
    saved = [b._compiled_call_impl for b in blocks]
    for b in blocks:
        b._compiled_call_impl = None
        b.compile(mode="reduce-overhead", dynamic=False)
    handle = t.register_forward_pre_hook(lambda *_: torch.compiler.cudagraph_mark_step_begin())
    out: dict = {}
    try:
        began = time.perf_counter()
        run_ours(gen, job, clock, cuda)  # compiles and captures
        out["compile_and_capture_job_s"] = time.perf_counter() - began
        timed = run_ours(gen, job, clock, cuda)
        out.update(
            s_per_step=timed["s_per_step"],
            total_s=timed["total_s"],
            peak_allocated_gib=timed["peak_allocated_gib"],
            peak_reserved_gib=timed["peak_reserved_gib"],
        )
        flops = result.get("flops_per_forward")
        if flops:
            out["mfu_vs_989"] = flops / timed["s_per_step"] / H100_BF16_PEAK
        if result.get("reference", {}).get("s_per_step"):
            out["ratio_vs_reference"] = timed["s_per_step"] / result["reference"]["s_per_step"]
        if result.get("ours", {}).get("s_per_step"):
            out["vs_ours_compiled"] = timed["s_per_step"] / result["ours"]["s_per_step"]
    except Exception as exc:
        out["error"] = repr(exc)[:600]
    finally:
        handle.remove()
        for b, impl in zip(blocks, saved):
            b._compiled_call_impl = impl
    return out


def frame_difference(frames, reference) -> dict:
    """How far uint8 frames are from a reference run's (same seed and job): relative L2 and the
    largest and mean absolute difference on 0-255."""
    import numpy as np

    a, b = frames.astype(np.float64), reference.astype(np.float64)
    return {
        "rel_l2": float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)),
        "max_abs": float(np.abs(a - b).max()),
        "mean_abs": float(np.abs(a - b).mean()),
    }


def save(result: dict, path: Path | None) -> None:
    """Writes what is measured so far: a run cut off by a time limit still leaves its figures."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")


# The target machines: the allocator cap (its reserved-VRAM target), the RAM the plan may assume
# (the machine's), and the dtype rule of the GPU (a T4 has no bf16).
PROFILE_RUNS = {
    "colab-t4": dict(vram_limit_gib=14.5, ram_limit_gib=12.7e9 / GIB, compute_dtype="fp16", rss_target_gib=10.5),
    "laptop-6gb": dict(vram_limit_gib=5.75, ram_limit_gib=16.0, compute_dtype="bf16", rss_target_gib=12.0),
    "gpu-8gb": dict(vram_limit_gib=7.75, ram_limit_gib=16.0, compute_dtype="bf16", rss_target_gib=12.0),
    "gpu-12gb": dict(vram_limit_gib=11.75, ram_limit_gib=32.0, compute_dtype="bf16", rss_target_gib=20.0),
}


def apply_profile(args) -> None:
    """--profile NAME: the memory plan of that machine, chosen by the studio (mode auto)."""
    if not args.profile:
        return
    p = PROFILE_RUNS[args.profile]
    args.mode = "auto"
    args.vram_limit_gib = p["vram_limit_gib"]
    args.ram_limit_gib = p["ram_limit_gib"]
    args.compute_dtype = p["compute_dtype"]
    args.offload_weights = "auto"  # the plan picks 2-byte or 8-bit weights for that RAM


def studio_settings(args, cuda: bool, **extra):
    """The studio's settings for this run (the generator reads nothing else)."""
    from backend.utils.config import Settings

    profile = getattr(args, "profile", None)
    return Settings(
        gpu_profile=args.mode if cuda else "auto",
        framepack_compile=args.compile,
        framepack_warmup=True,
        fp8_matmul=False,
        offload_weights=args.offload_weights,
        storage_8bit=args.storage_8bit,
        compute_dtype=getattr(args, "compute_dtype", "auto"),
        vram_limit_gib=args.vram_limit_gib if profile else 0.0,
        ram_limit_gib=getattr(args, "ram_limit_gib", 0.0) if profile else 0.0,
        plan_bucket=args.size if cuda else 0,
        models_dir=str(Path(os.environ.get("STUDIO_MODELS_DIR", "/tmp/studio-bench-models"))),
        **extra,
    )


def make_job(size: int, window: int, sections: int, steps: int) -> dict:
    """The benchmark job: two random images, as arrays (ours) and PIL images (the pipeline)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    last = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return {
        "first": first,
        "last": last,
        "image_a": Image.fromarray(first),
        "image_b": Image.fromarray(last),
        "height": size,
        "width": size,
        "window": window,
        "sections": sections,
        "steps": steps,
    }


def plain_call(job: dict, sections: int, steps: int) -> dict:
    """The plain pipeline's arguments for the benchmark job: first + last image, FramePack's
    distilled guidance 10, seed 1 (add `callback_on_step_end` as needed)."""
    import torch

    return dict(
        image=job["image_a"],
        last_image=job["image_b"],
        prompt=PROMPT,
        height=job["height"],
        width=job["width"],
        num_frames=sections * ((job["window"] - 1) * 4 + 1),
        latent_window_size=job["window"],
        num_inference_steps=steps,
        guidance_scale=10.0,
        true_cfg_scale=1.0,
        sampling_type="inverted_anti_drifting",
        generator=torch.Generator("cpu").manual_seed(1),
        output_type="np",
    )


def engine_request(job: dict, sections: int, steps: int, cache: str = "off") -> tuple[dict, dict]:
    """The studio engine's segment and params for the same job (seed 1, a start→end strength ramp)."""
    import numpy as np

    segment = {"sections": sections, "seed": 1, "end_embed_weights": list(np.linspace(0.2, 0.8, sections))}
    params = {
        "steps": steps,
        "latent_window_size": job["window"],
        "distilled_guidance": 10.0,
        "true_cfg": 1.0,
        "cache": cache,
    }
    return segment, params


def cap_vram(gib: float, result: dict) -> None:
    """Simulates a smaller GPU from here on: the caching allocator cannot reserve more than `gib`."""
    import torch

    from backend.pipeline.framepack.residency import allocator_cap_gib

    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    # As the studio caps it (STUDIO_VRAM_LIMIT_GIB): a margin under the target for page rounding.
    torch.cuda.set_per_process_memory_fraction(allocator_cap_gib(gib) * GIB / total)
    result["vram_limit_gib"] = gib
    result["allocator_cap_gib"] = allocator_cap_gib(gib)


def from_disk(args, result: dict, rss: RssSampler, clock: Clock, cuda: bool, spec: dict) -> dict:
    """Saves the random models in diffusers layout (child process), loads them the way the studio
    does (`load()` with FRAMEPACK_DIR), and runs the job: host RSS peak of loading and of the job."""
    import subprocess

    from backend.pipeline.framepack.engine import FramePackEngine

    folder = args.from_disk
    if not (folder / "model_index.json").exists():
        began = time.perf_counter()
        cmd = [sys.executable, __file__, "--save-to", str(folder)]
        cmd += ["--full-text-encoder"] if args.full_text_encoder else []
        cmd += ["--tiny"] if spec is TINY else []
        subprocess.run(cmd, check=True)
        result["save_s"] = time.perf_counter() - began
    result["from_disk"] = str(folder)
    gen = FramePackEngine(studio_settings(args, cuda, framepack_dir=str(folder)))
    rss.reset()
    began = time.perf_counter()
    gen.load()
    result["ours_load_s"] = time.perf_counter() - began
    result["ours_load_peak_rss_gib"] = rss.peak / GIB
    result["ours_load_peak_rss_anon_gib"] = rss.peak_anon / GIB
    result["ours_load_seconds"] = dict(gen.load_seconds)
    result["ours_memory_mode"], result["ours_offload_weights"] = gen.memory_mode, gen.offload_weights
    result["plan"] = gen.plan.describe() if gen.plan else None
    if cuda and args.vram_limit_gib:
        cap_vram(args.vram_limit_gib, result)
    save(result, args.out)
    job = make_job(result["size"], result["window"], args.sections, args.steps)
    rss.reset()
    result["ours"] = run_ours(gen, job, clock, cuda)
    result["ours"]["peak_rss_gib"] = rss.peak / GIB
    result["ours"]["peak_rss_anon_gib"] = rss.peak_anon / GIB
    rss.stop()
    result["peak_rss_gib_process"] = max(result["ours_load_peak_rss_gib"], rss.peak / GIB)
    print(json.dumps(result, indent=2, default=str))
    save(result, args.out)
    return result


# --- the run -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny models of the same architecture, on the CPU")
    ap.add_argument(
        "--mode",
        default="resident",
        choices=["resident", "fp8", "offload", "auto"],
        help="auto: the studio's own memory plan for the (capped) VRAM and RAM",
    )
    ap.add_argument(
        "--profile",
        default=None,
        choices=sorted(PROFILE_RUNS),
        help="simulate a machine: VRAM cap, RAM the plan assumes, the GPU's dtype rule (mode auto)",
    )
    ap.add_argument("--compute-dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    ap.add_argument("--ram-limit-gib", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument(
        "--fp16-error",
        action="store_true",
        help="transformer output of fp16 (fp32 stream) and bf16 against an fp32 reference",
    )
    ap.add_argument("--reference", action="store_true", help="also run the plain diffusers pipeline")
    ap.add_argument("--size", type=int, default=640, help="square frame edge in pixels")
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument("--sections", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--growth-sections", type=int, default=0, help="peak VRAM at 1 and at N sections (1 step)")
    ap.add_argument("--magcache", action="store_true", help="also time the fast mode (MagCache) at each threshold")
    ap.add_argument(
        "--magcache-steps", type=int, nargs="+", default=[25, 13, 8], help="step counts of the MagCache grid"
    )
    ap.add_argument("--no-sync", action="store_true", help="also time ours with no device sync at each step")
    ap.add_argument("--attention", action="store_true", help="also time each SDPA kernel on the job's shapes")
    ap.add_argument("--cudagraphs", action="store_true", help="experiment: blocks compiled with CUDA graphs")
    ap.add_argument("--fp8-matmul", action="store_true", help="also measure FP8 matmuls (error + speed)")
    ap.add_argument(
        "--storage-error",
        action="store_true",
        help="transformer output error of 8-bit weight storage (fp8, int8) against bf16",
    )
    ap.add_argument(
        "--offload-weights",
        default="bf16",
        choices=["bf16", "fp8", "auto"],
        help="offload mode: transformer weights in host RAM as bf16 or 8-bit",
    )
    ap.add_argument("--storage-8bit", default="int8", choices=["int8", "fp8"], help="format of 8-bit weights")
    ap.add_argument("--vram-limit-gib", type=float, default=0.0, help="simulate a smaller GPU")
    ap.add_argument("--full-text-encoder", action="store_true", help="32-layer Llama (8B) text encoder")
    ap.add_argument(
        "--from-disk",
        type=Path,
        default=None,
        help="measure the real loading path: save the models to DIR (a child process, once), then "
        "load them with FramePackEngine.load() (FRAMEPACK_DIR=DIR) instead of attach()",
    )
    ap.add_argument("--save-to", type=Path, default=None, help=argparse.SUPPRESS)  # the child of --from-disk
    ap.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = ap.parse_args(argv)
    apply_profile(args)

    import torch

    from backend.pipeline.framepack.engine import FramePackEngine

    rss = RssSampler()
    cuda = not args.tiny and torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = (torch.float16 if args.compute_dtype in ("fp16", "fp32") else torch.bfloat16) if cuda else torch.float32
    spec = TINY if args.tiny or not cuda else FULL
    size = 64 if spec is TINY else args.size
    window = 3 if spec is TINY else args.window
    result: dict = {
        "command": "python benchmarks/framepack_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "models": "tiny" if spec is TINY else "full-size random",
        "mode": args.mode,
        "size": size,
        "window": window,
        "sections": args.sections,
        "steps": args.steps,
        "profile": args.profile,
        "compute_dtype": args.compute_dtype,
    }
    if args.profile:
        result["targets"] = {
            "peak_rss_gib": PROFILE_RUNS[args.profile]["rss_target_gib"],
            "vram_reserved_gib": args.vram_limit_gib,
        }
    try:
        import diffusers

        result["diffusers"] = diffusers.__version__
    except Exception:
        pass
    clock = Clock(cuda)
    began = time.perf_counter()
    if args.save_to:
        build_pipeline(spec, device, dtype, args.full_text_encoder).save_pretrained(str(args.save_to))
        return {"saved": str(args.save_to), "seconds": time.perf_counter() - began}
    if args.from_disk:
        return from_disk(args, result, rss, clock, cuda, spec)
    pipe = build_pipeline(spec, device, dtype, args.full_text_encoder)
    result["build_s"] = time.perf_counter() - began
    result["transformer_params"] = sum(p.numel() for p in pipe.transformer.parameters())
    job = make_job(size, window, args.sections, args.steps)

    kwargs = None
    if args.mode == "resident" or not cuda:
        # Reference and FLOPs need everything on the device (the plain pipeline's high-VRAM path).
        kwargs = capture_forward_kwargs(pipe, job)
        result["flops_per_forward"] = count_flops(pipe.transformer, kwargs)
        result["tokens_per_forward"] = tokens_per_forward(pipe.transformer, kwargs)
        if args.fp16_error:
            result["fp16_error"] = fp16_error(pipe.transformer, kwargs)
            save(result, args.out)
        if args.reference:
            if cuda:  # the first job pays cuDNN/cuBLAS set-up: kept apart
                result["reference_first_job"] = run_reference(pipe, job, clock, cuda)
                save(result, args.out)
            rss.reset()
            result["reference"] = run_reference(pipe, job, clock, cuda)
            result["reference"]["peak_rss_gib"] = rss.peak / GIB
    elif args.reference:
        # The offload target compares with our resident s/step (another process); the
        # plain pipeline's own offload figures are in /work/shared/reference (leaf-level groups).
        result["reference_note"] = "the plain pipeline runs in --mode resident only"

    if args.storage_error and kwargs is not None:
        from backend.pipeline.framepack.weight_storage import MIN_WEIGHT_NUMEL

        result["storage_8bit_error"] = storage_error(pipe.transformer, kwargs, 64 if spec is TINY else MIN_WEIGHT_NUMEL)
        save(result, args.out)

    gen = FramePackEngine(studio_settings(args, cuda))
    # fp8/offload placement starts from the models on the GPU, where they were built: `place` moves
    # each part once, layer by layer, to its final home (host RAM in its final dtype, or disk), so
    # the host RSS peak is that of the placement itself. (`--from-disk` measures the load path.)
    rss.reset()
    began = time.perf_counter()
    gen.attach(pipe, device, mode=args.mode if cuda else "cpu")
    result["ours_setup_s"] = time.perf_counter() - began
    result["plan"] = gen.plan.describe() if gen.plan else None
    result["ours_setup_peak_rss_gib"] = rss.peak / GIB
    result["ours_setup_peak_rss_anon_gib"] = rss.peak_anon / GIB
    result["ours_load_seconds"] = dict(gen.load_seconds)
    result["ours_compiled"] = gen.compiled
    result["ours_offload_weights"] = gen.offload_weights
    if cuda and args.mode != "resident" and args.vram_limit_gib:
        cap_vram(args.vram_limit_gib, result)
    elif args.profile:
        result["vram_limit_gib"] = args.vram_limit_gib  # applied by the generator before placing
    save(result, args.out)
    if cuda:  # the first job after loading (compile already warmed up in attach): kept apart
        result["ours_first_job"] = run_ours(gen, job, clock, cuda)
        save(result, args.out)
    rss.reset()
    result["ours"] = run_ours(gen, job, clock, cuda)
    result["ours"]["peak_rss_gib"] = rss.peak / GIB
    result["ours"]["peak_rss_anon_gib"] = rss.peak_anon / GIB
    result["peak_rss_gib_process"] = max(rss.peak / GIB, result["ours_setup_peak_rss_gib"])
    result["ours"]["text_encode_s"] = time_text_encode(gen, clock)

    flops = result.get("flops_per_forward")
    for key in ("reference", "ours"):
        if key in result and flops and cuda and result[key]["s_per_step"]:
            result[key]["mfu_vs_989"] = flops / result[key]["s_per_step"] / H100_BF16_PEAK
    if "reference" in result:
        ref, ours = result["reference"], result["ours"]
        result["ratios_ours_over_reference"] = {
            k: (ours[k] / ref[k]) if ours.get(k) and ref.get(k) else None
            for k in (
                "s_per_step",
                "s_per_section_at_25_steps",
                "first_section_s",
                "peak_allocated_gib",
                "peak_reserved_gib",
                "total_s",
            )
        }

    save(result, args.out)
    if args.growth_sections:
        one = run_ours(gen, job, clock, cuda, sections=1, steps=1)
        many = run_ours(gen, job, clock, cuda, sections=args.growth_sections, steps=1)
        result["vram_growth"] = {
            "sections": [1, args.growth_sections],
            "peak_allocated_gib": [one.get("peak_allocated_gib"), many.get("peak_allocated_gib")],
            "peak_reserved_gib": [one.get("peak_reserved_gib"), many.get("peak_reserved_gib")],
            "growth_allocated": (many["peak_allocated_gib"] / one["peak_allocated_gib"] - 1) if cuda else None,
            "growth_reserved": (many["peak_reserved_gib"] / one["peak_reserved_gib"] - 1) if cuda else None,
            "frames": [one["frames"], many["frames"]],
        }
        save(result, args.out)
    if args.no_sync:
        result["no_sync"] = no_sync_steps(gen, job, clock, result)
        save(result, args.out)
    if args.attention and kwargs is not None:
        result["attention_kernels"] = attention_kernels(pipe.transformer, kwargs, cuda)
        save(result, args.out)
    if args.magcache:
        from benchmarks.magcache_speed import SETTINGS, grid

        # One section per job: every section runs the same skip pattern (a CPU test checks it).
        steps = tuple(args.magcache_steps) if cuda else (8, 4)
        result["magcache"] = grid(gen, job, clock, steps, SETTINGS, 1, PROMPT)
        save(result, args.out)
    if args.cudagraphs and cuda and gen.compiled:
        result["cudagraph_blocks"] = cudagraph_blocks(gen, pipe, job, clock, cuda, result)
        save(result, args.out)
    if args.fp8_matmul and kwargs is not None:
        if cuda and not __import__("backend.pipeline.framepack.accel", fromlist=["x"]).fp8_matmul_supported():
            result["fp8_matmul"] = {"error": "needs an Ada or Hopper GPU"}
        else:
            try:
                err = fp8_error(pipe.transformer, kwargs) if cuda else {"skipped": "CPU has no _scaled_mm fp8"}
                if cuda:
                    run_ours(gen, job, clock, cuda)  # recompiles the converted blocks
                    timed = run_ours(gen, job, clock, cuda)
                    err.update(
                        s_per_step=timed["s_per_step"],
                        total_s=timed["total_s"],
                        peak_allocated_gib=timed["peak_allocated_gib"],
                        peak_reserved_gib=timed["peak_reserved_gib"],
                        mfu_vs_989=flops / timed["s_per_step"] / H100_BF16_PEAK,
                    )
                    if "reference" in result:
                        err["s_per_step_ratio_vs_reference"] = timed["s_per_step"] / result["reference"]["s_per_step"]
                result["fp8_matmul"] = err
            except Exception as exc:
                result["fp8_matmul"] = {"error": repr(exc)}
    rss.stop()
    result["peak_rss_gib_process"] = max(result["peak_rss_gib_process"], rss.peak / GIB)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    save(result, args.out)
    return result


if __name__ == "__main__":
    main()
