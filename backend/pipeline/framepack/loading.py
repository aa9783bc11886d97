"""Finding, reading and placing FramePack's parts: the diffusers `from_pretrained` half of the engine.

`FramePackLoader` reads diffusers' `HunyuanVideoFramepackPipeline` (its encoders, VAE, transformer
and scheduler) from `FRAMEPACK_DIR` or the hub, decides the memory plan before reading and places
every part where the plan says; sampling with the loaded parts is `sampling.py`'s. Around it:

- the memory plan (`residency.py`, `memory.py`): blocks on the GPU / in RAM / on disk, 2-byte or
  8-bit weights, and the compute dtype (`compute_dtype.py`: bf16, or fp16 with an fp32 residual
  stream on GPUs without bf16), decided from VRAM, RAM, compute capability and bucket; outside
  resident mode the largest parts are read straight into their final form and place, so host RAM
  never holds the whole pipeline;
- speed (`accel.py`): regional `torch.compile` of the 60 blocks, warmed up while loading, with an
  on-disk kernel cache; opt-in FP8 matmuls on Hopper/Ada.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from pathlib import Path

from backend.pipeline.framepack.memory import GIB, free_host_gib, place, plan_for_mode, return_freed_host_memory
from backend.pipeline.framepack.residency import (
    MemoryPlan,
    allocator_cap_gib,
    default_bucket,
    fit_tiers,
    plan_residency,
)
from backend.pipeline.loras import LoraSwitch
from backend.utils.config import Settings
from backend.utils.progress import Progress, ProgressCallback

log = logging.getLogger(__name__)

# Warm-up forward shape: the default 640² bucket, window 9, a short prompt. Compile is dynamic, so
# other buckets and prompt lengths reuse it.
WARMUP_SIZE = (640, 640)
WARMUP_WINDOW = 9
WARMUP_TEXT_TOKENS = 32
WARMUP_TEXT_PADDED = 256  # the pipeline's max_sequence_length: prompts are padded to it


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


def default_resolution(settings: Settings, device: str) -> int:
    """The bucket the page starts at on this machine (`residency.default_bucket`), from the GPU's
    memory and compute capability as the plan sees them (STUDIO_VRAM_LIMIT_GIB included)."""
    if device != "cuda":
        return default_bucket(None, None, settings.plan_bucket)
    import torch

    props = torch.cuda.get_device_properties(0)
    vram = props.total_memory / GIB
    if settings.vram_limit_gib:
        vram = min(vram, settings.vram_limit_gib)
    return default_bucket(vram, (props.major, props.minor), settings.plan_bucket)


def framepack_source_problem(settings: Settings) -> str | None:
    """Why the FramePack weights cannot be loaded from disk right now, or None when they can."""
    if settings.framepack_dir:
        path = Path(settings.framepack_dir).expanduser()
        if path.is_dir():
            return (
                None
                if (path / "model_index.json").exists()
                else (f"FRAMEPACK_DIR={path} has no model_index.json (run scripts/setup.sh to assemble it)")
            )
        if path.is_absolute() or settings.framepack_dir.startswith("."):
            return f"FRAMEPACK_DIR={path} does not exist (run scripts/setup.sh to download the models)"
        return None  # a hub id: resolved through the Hugging Face cache when loading
    return None


class FramePackLoader:
    """FramePack's parts once read and placed, and how they got there (device, plan, dtype policy,
    compile state, timings). Loads lazily, once, under a lock; a failed load is remembered for
    `describe()` and tried again by the next caller."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pipe = None
        self.device = "cpu"
        self.memory_mode = "unloaded"
        self.offload_weights: str | None = None  # bf16 / fp8 host weights in offload mode
        self.plan: MemoryPlan | None = None
        self.policy = None  # compute_dtype.ComputePolicy of the loaded model
        self.compiled = False
        self.fp8_matmul = False
        self.placement = None  # offload mode: moves encoders on/off the GPU around encoding
        self.load_seconds: dict[str, float] = {}
        self._load_lock = threading.Lock()
        self.load_error: str | None = None
        self.loras = LoraSwitch(settings.loras_dir)

    def describe(self) -> dict:
        problem = framepack_source_problem(self.settings)
        if self.pipe is not None:
            return {
                "ready": True,
                "loaded": True,
                "device": self.device,
                "memory_mode": self.memory_mode,
                "offload_weights": self.offload_weights,
                "storage_8bit": self.settings.storage_8bit,
                "compiled": self.compiled,
                "fp8_matmul": self.fp8_matmul,
                "plan": self.plan.describe() if self.plan else None,
                "reason": "loaded",
                "installed": True,
            }
        if problem:
            return {"ready": False, "loaded": False, "installed": False, "reason": problem}
        # Ready means the weights are here: a hub id that is not cached yet would be a 45 GB
        # download (or, offline, a failure) inside the first job.
        from backend.utils.model_registry import framepack_install_problem

        missing = framepack_install_problem(self.settings)
        if missing is not None:
            return {
                "ready": False,
                "loaded": False,
                "installed": False,
                "reason": missing.en,
                "reason_ko": missing.ko,
                "missing": missing.missing,
                "fix": missing.fix,
            }
        if self.load_error:  # installed, but the last load failed: the next job tries again
            return {"ready": False, "loaded": False, "installed": True, "reason": self.load_error}
        return {
            "ready": True,
            "loaded": False,
            "installed": True,
            "reason": "weights on disk; loads on the first FramePack job",
        }

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
                self._load(progress)
            except Exception as exc:
                self.load_error = f"loading FramePack failed: {exc}"
                raise
            self.load_error = None
            if progress:
                progress(Progress("load", 1.0, f"FramePack loaded ({self.memory_mode})"))

    def _load(self, progress: ProgressCallback | None = None) -> None:
        from diffusers import HunyuanVideoFramepackPipeline

        device, why = resolve_device(self.settings.device)
        token = self.settings.hf_token or None
        s = self.settings
        began = time.perf_counter()
        # Decided before reading: outside resident mode the largest parts are read straight into
        # their final form and place, so loading never holds the whole pipeline in host RAM.
        self._cap_vram(device)
        plan = self._plan(device)
        dtype = storage_dtype(device, plan)
        components: dict = {}
        if plan.mode != "resident" and device == "cuda":
            components = self._read_lean(plan, dtype, token)
        if s.framepack_dir:
            pipe = HunyuanVideoFramepackPipeline.from_pretrained(
                s.framepack_dir, dtype=dtype, token=token, **components
            )
        else:
            # The layout of diffusers' FramePack docs: HunyuanVideo base + FramePack transformer +
            # the Flux Redux SigLIP image encoder, each from its own repo.
            from diffusers import HunyuanVideoFramepackTransformer3DModel
            from transformers import SiglipImageProcessor, SiglipVisionModel

            if "transformer" not in components:
                components["transformer"] = HunyuanVideoFramepackTransformer3DModel.from_pretrained(
                    s.framepack_transformer, dtype=dtype, token=token
                )
            feature_extractor = SiglipImageProcessor.from_pretrained(
                s.framepack_image_encoder, subfolder="feature_extractor", token=token
            )
            image_encoder = SiglipVisionModel.from_pretrained(
                s.framepack_image_encoder, subfolder="image_encoder", dtype=dtype, token=token
            )
            pipe = HunyuanVideoFramepackPipeline.from_pretrained(
                s.framepack_base,
                feature_extractor=feature_extractor,
                image_encoder=image_encoder,
                dtype=dtype,
                token=token,
                **components,
            )
        self.load_seconds["read"] = time.perf_counter() - began
        self.attach(pipe, device, why=why, progress=progress, plan=plan)

    def _cap_vram(self, device: str) -> None:
        """STUDIO_VRAM_LIMIT_GIB: the caching allocator may not reserve more (set before loading)."""
        import torch

        limit = self.settings.vram_limit_gib
        if device == "cuda" and limit:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, allocator_cap_gib(limit) * GIB / total))

    def _plan(self, device: str, mode: str | None = None) -> MemoryPlan:
        import psutil
        import torch

        s = self.settings
        if device != "cuda":
            return plan_for_mode("cpu")
        free, total = torch.cuda.mem_get_info()
        vram = min(total, free + 0.25 * GIB) / GIB  # what others already use is not ours
        if s.vram_limit_gib:
            vram = min(vram, allocator_cap_gib(s.vram_limit_gib))
        ram_total = psutil.virtual_memory().total / GIB
        ram_free = free_host_gib()
        if s.ram_limit_gib:
            ram_total, ram_free = min(ram_total, s.ram_limit_gib), min(ram_free, s.ram_limit_gib)
        capability = torch.cuda.get_device_capability(0)
        bucket = s.plan_bucket or 640  # the page's default resolution; 480 is faster on small GPUs
        request = mode or s.gpu_profile
        return plan_residency(
            vram,
            ram_total,
            capability,
            bucket,
            device=device,
            ram_free_gib=ram_free,
            dtype_request=s.compute_dtype,
            weights_request=s.offload_weights,
            mode_request=request,
        )

    def _read_lean(self, plan: MemoryPlan, dtype, token) -> dict:
        """Text encoder and transformer for fp8/offload modes, each read and placed in turn.

        In offload mode (and fp8 mode short of host RAM) the text encoder (16 GB) goes layer by
        layer from its checkpoint to disk files; the transformer's large linears are quantised as
        they are read when they are to be 8-bit. Neither is ever whole in host RAM.
        """
        import torch
        from diffusers import HunyuanVideoFramepackTransformer3DModel
        from transformers import LlamaModel

        from backend.pipeline.framepack.weight_storage import load_model_8bit

        s = self.settings
        base, transformer_src, transformer_sub = (
            (s.framepack_dir, s.framepack_dir, "transformer")
            if s.framepack_dir
            else (s.framepack_base, s.framepack_transformer, None)
        )
        out = {}
        if plan.text_on_disk:
            from backend.pipeline.framepack.disk_stream import read_to_disk_stream

            out["text_encoder"] = read_to_disk_stream(
                LlamaModel, base, "text_encoder", "cuda", self._scratch_dir(), dtype, token
            )
        else:
            out["text_encoder"] = LlamaModel.from_pretrained(base, subfolder="text_encoder", dtype=dtype, token=token)
        fmt = s.storage_8bit if plan.weights == "8bit" else None
        self._transformer_config = HunyuanVideoFramepackTransformer3DModel.load_config(
            transformer_src, subfolder=transformer_sub, token=token
        )
        out["transformer"] = load_model_8bit(
            HunyuanVideoFramepackTransformer3DModel,
            transformer_src,
            transformer_sub,
            fmt,
            dtype,
            work_device="cuda",
            token=token,
            place_unit=self._unit_placer(plan),
        )
        torch.cuda.empty_cache()
        return_freed_host_memory()
        return out

    def _unit_placer(self, plan: MemoryPlan):
        """Sends each block, as soon as it is read, to its tier: GPU blocks to the GPU, disk blocks
        to their file (the host then never holds more than the RAM tier and one block)."""
        from backend.pipeline.framepack.block_stream import _placeholder, write_block
        from backend.pipeline.framepack.disk_stream import module_tensors

        folder = None
        fitted: dict = {}

        def place_unit(name: str, module) -> None:
            nonlocal folder
            head, _, index = name.partition(".")
            if "tiers" not in fitted:  # the block counts come from the config being read
                config = self._transformer_config
                fitted["tiers"] = fit_tiers(plan.tiers, config["num_layers"], config["num_single_layers"])
                fitted["dual"] = config["num_layers"]
            tiers = fitted["tiers"]
            i = int(index) + (0 if head == "transformer_blocks" else fitted["dual"])
            tier = tiers[i]
            if tier == "gpu":
                module.to("cuda")
            elif tier == "disk":
                if folder is None:
                    from backend.pipeline.framepack.block_stream import BlockStreamer

                    folder = BlockStreamer._make_folder(self._scratch_dir() / "blocks")
                    self._block_folder = folder
                items = list(module_tensors(module))
                module._studio_block_file = write_block([t for *_, t, _ in items], folder / f"block{i:03d}.bin")
                for mod, attr, t, is_param in items:
                    if is_param:
                        mod._parameters[attr].data = _placeholder(t)
                    else:
                        mod._buffers[attr] = _placeholder(t)

        return place_unit

    def _scratch_dir(self) -> Path:
        return Path(self.settings.models_dir) / "offload_scratch"

    def attach(
        self,
        pipe,
        device: str,
        mode: str | None = None,
        why: str = "",
        progress: ProgressCallback | None = None,
        plan: MemoryPlan | None = None,
    ) -> None:
        """Places an already built pipeline, applies the speed settings and warms up.

        `load()` calls this after reading the weights, with the plan it read them by; the benchmark
        calls it with full-size random models built in memory, so both measure the same code.
        """
        from backend.pipeline.framepack.compute_dtype import ComputePolicy, keep_stream_fp32

        pipe.set_progress_bar_config(disable=True)
        if plan is None:
            self._cap_vram(device)
            plan = self._plan(device, mode)
        began = time.perf_counter()
        self.placement = place(
            pipe,
            device,
            plan,
            scratch_dir=self._scratch_dir(),
            storage_format=self.settings.storage_8bit,
            read_ahead=self.settings.read_ahead_blocks,
            read_threads=self.settings.read_threads,
        )
        self.load_seconds["place"] = time.perf_counter() - began
        self.pipe, self.device, self.memory_mode, self.plan = pipe, device, plan.mode, plan
        self.offload_weights = plan.offload_weights
        self.fp8_matmul = self.compiled = False
        if device == "cuda":
            check_no_bf16(pipe, plan)
        if plan.dtype == "fp16":
            keep_stream_fp32(pipe.transformer)
        self.policy = ComputePolicy(
            plan.dtype if device == "cuda" else "fp32", "cuda" if device == "cuda" else "cpu", eager=self._eager_blocks
        )
        if device == "cuda":
            self._accelerate(progress)
        self.loras = LoraSwitch(self.settings.loras_dir, device)
        log.info(
            "FramePack on %s (%s): memory mode %s, compiled %s, fp8 matmul %s",
            device,
            why or device,
            plan.mode,
            self.compiled,
            self.fp8_matmul,
        )

    def _accelerate(self, progress: ProgressCallback | None) -> None:
        from backend.pipeline.framepack import accel

        s = self.settings
        transformer = self.pipe.transformer
        if s.fp8_matmul and self.memory_mode == "resident":
            if accel.fp8_matmul_supported():
                converted = accel.convert_fp8_linears(transformer)
                self.fp8_matmul = converted > 0
            else:
                log.warning("STUDIO_FP8_MATMUL needs an Ada or Hopper GPU; running bf16 matmuls")
        want = s.framepack_compile
        available, reason = accel.compile_available()
        if want == "on" and not available:
            raise RuntimeError(f"STUDIO_FRAMEPACK_COMPILE=on but {reason}")
        if want == "off" or not available:
            return
        accel.use_compile_cache(Path(s.models_dir) / "torch_compile_cache")
        accel.compile_blocks(transformer, dynamic=True)
        self.compiled = True
        if s.framepack_warmup:
            if progress:
                progress(Progress("load", 0.5, "compiling the FramePack transformer (once)"))
            began = time.perf_counter()
            self.warm_up()
            self.load_seconds["warmup"] = time.perf_counter() - began

    def _eager_blocks(self):
        from backend.pipeline.framepack.accel import eager_blocks

        return eager_blocks(self.pipe.transformer) if self.compiled else contextlib.nullcontext()

    def warm_up(self, size: tuple[int, int] | None = None, window: int = WARMUP_WINDOW) -> None:
        """One transformer forward on random inputs of a real job's shapes: compiles the blocks."""
        import torch

        pipe = self.pipe
        t = pipe.transformer
        c = t.config
        if size is None:
            edge = self.plan.bucket if self.plan else WARMUP_SIZE[0]
            size = (edge, edge)
        device = torch.device(self.device)
        dtype = t.dtype
        h, w = size[0] // pipe.vae_scale_factor_spatial, size[1] // pipe.vae_scale_factor_spatial
        enc = pipe.image_encoder.config
        image_tokens = (enc.image_size // enc.patch_size) ** 2

        def rand(*shape):
            return torch.randn(*shape, device=device, dtype=dtype)

        index = torch.arange(0, 1 + window + 19)
        # Prompts arrive padded to the encoder's max length and the model slices the valid part off
        # a longer concatenation: the same layout here, or the blocks' stride guards recompile on
        # the first real job (seen: 5-8 s on the H100).
        mask = torch.zeros(1, WARMUP_TEXT_PADDED, device=device, dtype=dtype)
        mask[:, :WARMUP_TEXT_TOKENS] = 1
        with torch.no_grad(), self.policy.context() if self.policy else contextlib.nullcontext():
            t(
                hidden_states=rand(1, c.in_channels, window, h, w),
                timestep=torch.tensor([999.0], device=device),
                encoder_hidden_states=rand(1, WARMUP_TEXT_PADDED, c.text_embed_dim),
                encoder_attention_mask=mask,
                pooled_projections=rand(1, c.pooled_projection_dim),
                image_embeds=rand(1, image_tokens, c.image_proj_dim),
                indices_latents=index[1 : 1 + window],
                guidance=torch.tensor([10000.0], device=device, dtype=dtype),
                latents_clean=rand(1, c.in_channels, 2, h, w),
                indices_latents_clean=torch.tensor([0, 1 + window]),
                latents_history_2x=rand(1, c.in_channels, 2, h, w),
                indices_latents_history_2x=index[2 + window : 4 + window],
                latents_history_4x=rand(1, c.in_channels, 16, h, w),
                indices_latents_history_4x=index[4 + window :],
                return_dict=False,
            )
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()

    def release(self) -> None:
        """Frees cached GPU memory after a job (the model stays loaded)."""
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def check_no_bf16(pipe, plan: MemoryPlan) -> None:
    """A GPU without bf16 fails to build bf16 kernels ("requires sm_80"; Triton, the compiled
    blocks, the 8-bit dequantisation): outside a bf16 plan no bf16 tensor may be left to run."""
    from backend.pipeline.framepack.compute_dtype import low_precision_tensors

    if plan.dtype == "bf16":
        return
    parts = [
        (n, getattr(pipe, n, None)) for n in ("transformer", "vae", "text_encoder", "text_encoder_2", "image_encoder")
    ]
    found = low_precision_tensors(parts)
    found += [
        f"transformer.{n}.compute_dtype"
        for n, m in pipe.transformer.named_modules()
        if getattr(m, "compute_dtype", None) is not None and str(m.compute_dtype) == "torch.bfloat16"
    ]
    if found:
        raise RuntimeError(f"compute dtype {plan.dtype} but bf16 weights remain: {found[:5]}")


def storage_dtype(device: str, plan: MemoryPlan):
    """The dtype the weights are read in: bf16 where the GPU computes it, else fp16 (also for fp32
    compute, which casts each weight up as it runs), fp32 on the CPU."""
    import torch

    if device != "cuda":
        return torch.float32
    return torch.bfloat16 if plan.dtype == "bf16" else torch.float16
