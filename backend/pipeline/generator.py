"""The FramePack engine: diffusers' HunyuanVideoFramepackPipeline with a first and a last image.

The pipeline runs as diffusers ships it (`sampling_type="inverted_anti_drifting"`, the only mode
that takes a last image); the studio adds three things around it without copying its loop:

- per-section image conditioning: a forward pre-hook on the transformer replaces the constant
  50/50 average of the two SigLIP embeddings with the job's start→end schedule (strength);
- progress and cancel: the step callback reports every step and raises `JobCancelled` to stop
  within one step (diffusers' own `_interrupt` would still decode every remaining section);
- live previews: `vae.decode` is wrapped to count finished sections and hand their frames, moved to
  the CPU as uint8, to the progress callback. Sections come out end-first.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from backend.config import Settings
from backend.pipeline.progress import JobCancelled, Progress, ProgressCallback

log = logging.getLogger(__name__)

GIB = 1024**3
# Free VRAM needed to keep everything resident (weights 26 GiB + untiled decode peak, measured 54 GiB
# reserved on an H100) and to keep the transformer resident in fp8 storage (12 GiB + tiled decode).
RESIDENT_MIN_FREE_GIB = 40
FP8_MIN_FREE_GIB = 20


def choose_memory_mode(requested: str, device: str, free_vram_gib: float) -> str:
    if device != "cuda":
        return "cpu"
    if requested != "auto":
        return requested
    if free_vram_gib >= RESIDENT_MIN_FREE_GIB:
        return "resident"
    if free_vram_gib >= FP8_MIN_FREE_GIB:
        return "fp8"
    return "offload"


def resolve_device(requested: str) -> tuple[str, str]:
    """(device, why) for the `STUDIO_DEVICE` setting."""
    import torch

    if requested == "cpu":
        return "cpu", "STUDIO_DEVICE=cpu"
    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(0)
    if requested == "cuda":
        raise RuntimeError("STUDIO_DEVICE=cuda but no CUDA GPU is visible to PyTorch")
    return "cpu", "no CUDA GPU visible to PyTorch"


def framepack_source_problem(settings: Settings) -> str | None:
    """Why the FramePack weights cannot be loaded from disk right now, or None when they can."""
    if settings.framepack_dir:
        path = Path(settings.framepack_dir).expanduser()
        if path.is_dir():
            return None if (path / "model_index.json").exists() else (
                f"FRAMEPACK_DIR={path} has no model_index.json (run scripts/setup.sh to assemble it)"
            )
        if path.is_absolute() or settings.framepack_dir.startswith("."):
            return f"FRAMEPACK_DIR={path} does not exist (run scripts/setup.sh to download the models)"
        return None  # a hub id: resolved through the Hugging Face cache when loading
    return None


def _to_uint8_frames(video: "Any") -> np.ndarray:
    """(B, C, T, H, W) in [-1, 1] on any device → (T, H, W, 3) uint8 on the CPU."""
    import torch

    frames = video[0].detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).cpu().numpy()


def _soft_prepend(current: np.ndarray, history: np.ndarray, overlap: int) -> np.ndarray:
    """The pipeline's overlap blend of a new (earlier) section in front of the frames so far."""
    if overlap <= 0 or history.shape[0] < overlap or current.shape[0] < overlap:
        return np.concatenate([current, history])
    weights = np.linspace(1, 0, overlap, dtype=np.float32)[:, None, None, None]
    blended = weights * current[-overlap:] + (1 - weights) * history[:overlap]
    return np.concatenate(
        [current[:-overlap], np.clip(blended + 0.5, 0, 255).astype(np.uint8), history[overlap:]]
    )


class FramePackGenerator:
    name = "framepack"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pipe = None
        self.device = "cpu"
        self.memory_mode = "unloaded"
        self._load_lock = threading.Lock()
        self.load_error: str | None = None

    # --- loading ------------------------------------------------------------------------------
    def describe(self) -> dict:
        problem = framepack_source_problem(self.settings)
        if self.pipe is not None:
            return {"ready": True, "loaded": True, "device": self.device, "memory_mode": self.memory_mode,
                    "reason": "loaded"}
        if problem:
            return {"ready": False, "loaded": False, "reason": problem}
        if self.load_error:
            return {"ready": False, "loaded": False, "reason": self.load_error}
        return {"ready": True, "loaded": False, "reason": "loads on the first FramePack job"}

    def load(self, progress: ProgressCallback | None = None) -> None:
        with self._load_lock:
            if self.pipe is not None:
                return
            problem = framepack_source_problem(self.settings)
            if problem:
                raise RuntimeError(problem)
            if progress:
                progress(Progress("load", 0.0, "loading FramePack models"))
            try:
                self._load()
            except Exception as exc:
                self.load_error = f"loading FramePack failed: {exc}"
                raise
            self.load_error = None
            if progress:
                progress(Progress("load", 1.0, f"FramePack loaded ({self.memory_mode})"))

    def _load(self) -> None:
        import torch
        from diffusers import HunyuanVideoFramepackPipeline

        device, why = resolve_device(self.settings.device)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        token = self.settings.hf_token or None
        s = self.settings
        if s.framepack_dir:
            pipe = HunyuanVideoFramepackPipeline.from_pretrained(s.framepack_dir, dtype=dtype, token=token)
        else:
            # The layout of diffusers' FramePack docs: HunyuanVideo base + FramePack transformer +
            # the Flux Redux SigLIP image encoder, each from its own repo.
            from diffusers import HunyuanVideoFramepackTransformer3DModel
            from transformers import SiglipImageProcessor, SiglipVisionModel

            transformer = HunyuanVideoFramepackTransformer3DModel.from_pretrained(
                s.framepack_transformer, dtype=dtype, token=token
            )
            feature_extractor = SiglipImageProcessor.from_pretrained(
                s.framepack_image_encoder, subfolder="feature_extractor", token=token
            )
            image_encoder = SiglipVisionModel.from_pretrained(
                s.framepack_image_encoder, subfolder="image_encoder", dtype=dtype, token=token
            )
            pipe = HunyuanVideoFramepackPipeline.from_pretrained(
                s.framepack_base, transformer=transformer, feature_extractor=feature_extractor,
                image_encoder=image_encoder, dtype=dtype, token=token,
            )
        pipe.set_progress_bar_config(disable=True)
        free = torch.cuda.mem_get_info()[0] / GIB if device == "cuda" else 0.0
        mode = choose_memory_mode(s.gpu_profile, device, free)
        self._place(pipe, device, mode)
        self.pipe, self.device, self.memory_mode = pipe, device, mode
        log.info("FramePack loaded on %s (%s), memory mode %s", device, why, mode)

    @staticmethod
    def _place(pipe, device: str, mode: str) -> None:
        import torch

        if mode in ("cpu", "resident"):
            pipe.to(device)
        elif mode == "fp8":
            # Weights stored in fp8, each layer cast to bf16 as it runs: the transformer halves.
            pipe.transformer.enable_layerwise_casting(
                storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16
            )
            pipe.to(device)
            pipe.vae.enable_tiling()
        elif mode == "offload":
            onload = torch.device(device)
            pipe.transformer.enable_group_offload(
                onload_device=onload, offload_device=torch.device("cpu"),
                offload_type="leaf_level", use_stream=True,
            )
            for name in ("text_encoder", "text_encoder_2", "image_encoder", "vae"):
                getattr(pipe, name).to(device)
            pipe.vae.enable_tiling()
        else:
            raise ValueError(f"unknown memory mode {mode!r}")

    def release(self) -> None:
        """Frees cached GPU memory after a job (the model stays loaded)."""
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    # --- one transition -----------------------------------------------------------------------
    def generate(self, first: np.ndarray, last: np.ndarray, prompt: str, segment: dict,
                 params: dict, progress: ProgressCallback) -> np.ndarray:
        import torch
        from PIL import Image

        self.load(progress)
        pipe = self.pipe
        sections = segment["sections"]
        steps = params["steps"]
        window = params["latent_window_size"]
        height, width = first.shape[:2]
        weights = segment["end_embed_weights"]  # temporal order
        image_a, image_b = Image.fromarray(first), Image.fromarray(last)

        with torch.no_grad():
            device = pipe._execution_device
            dtype = pipe.transformer.dtype
            embed_a = pipe.encode_image(pipe.video_processor.preprocess(image_a, height, width), device=device).to(dtype)
            embed_b = pipe.encode_image(pipe.video_processor.preprocess(image_b, height, width), device=device).to(dtype)

        cache = params.get("cache", "off")
        state = {"decoded": 0, "preview": None}
        overlap = (window - 1) * 4 + 1

        def section_embeds(_module, args, kwargs):
            # Generation order is end-first: generated section g covers temporal section n-1-g.
            temporal = max(0, sections - 1 - state["decoded"])
            w = float(weights[min(temporal, len(weights) - 1)])
            kwargs["image_embeds"] = (1.0 - w) * embed_a + w * embed_b
            return args, kwargs

        original_decode = pipe.vae.decode

        def counting_decode(*args, **kwargs):
            out = original_decode(*args, **kwargs)
            video = out[0] if isinstance(out, tuple) else out.sample
            frames = _to_uint8_frames(video)
            state["preview"] = frames if state["preview"] is None else _soft_prepend(frames, state["preview"], overlap)
            state["decoded"] += 1
            if cache != "off":
                # The next section starts from fresh noise: nothing of this one's cache applies.
                # Resetting drops the cache context too, so it is set again (diffusers 0.42).
                pipe.transformer._reset_stateful_cache()
                from diffusers.hooks.hooks import CacheContext, _set_cache_context

                _set_cache_context(pipe.transformer, CacheContext("cond"))
            progress(Progress(
                "generate", state["decoded"] / sections,
                f"section {state['decoded']}/{sections} decoded",
                {"section": state["decoded"], "sections": sections, "step": steps, "steps": steps,
                 "preview_frames": state["preview"]},
            ))
            return out

        def on_step(_pipe, i, _t, callback_kwargs):
            section = state["decoded"]
            progress(Progress(
                "generate", (section + (i + 1) / steps) / sections,
                f"section {section + 1}/{sections}, step {i + 1}/{steps}",
                {"section": section + 1, "sections": sections, "step": i + 1, "steps": steps},
            ))
            return {}

        handle = pipe.transformer.register_forward_pre_hook(section_embeds, with_kwargs=True)
        pipe.vae.decode = counting_decode
        context = contextlib.nullcontext()
        if cache != "off":
            from diffusers.hooks import FirstBlockCacheConfig

            pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=float(cache.split(":")[1])))
            context = pipe.transformer.cache_context("cond")
        try:
            with context:
                result = pipe(
                    image=image_a, last_image=image_b, prompt=prompt or "", height=height, width=width,
                    num_frames=sections * ((window - 1) * 4 + 1), latent_window_size=window,
                    num_inference_steps=steps, guidance_scale=params["distilled_guidance"],
                    true_cfg_scale=params["true_cfg"], sampling_type="inverted_anti_drifting",
                    generator=torch.Generator("cpu").manual_seed(int(segment["seed"])),
                    callback_on_step_end=on_step, output_type="np",
                )
        finally:
            handle.remove()
            del pipe.vae.decode  # back to the class's method
            if cache != "off":
                pipe.transformer.disable_cache()
        frames = np.clip(result.frames[0] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return frames


__all__ = ["FramePackGenerator", "JobCancelled", "choose_memory_mode"]
