"""Reading and placing Wan's parts: the diffusers `from_pretrained` half of the engine.

The pipeline is read from STUDIO_MODELS_DIR/<the chosen model's folder> (diffusers layout, assembled
by `scripts/setup.sh --only wan` for Wan 2.1 FLF2V, `--only wan22` for Wan 2.2 I2V A14B, whose
model_index.json names a second expert `transformer_2` and `boundary_ratio`, no image encoder) with
diffusers' `from_pretrained`: the transformer and text encoder
in bf16 on a GPU, the VAE and CLIP image encoder in fp32 (what diffusers' Wan docs load them in),
everything fp32 on the CPU. Placement, by the GPU memory the studio may use (bf16 weights: the
transformer ~33 GB, UMT5-XXL ~11 GB, CLIP and VAE ~2 GB):

| GPU memory | placement | why |
|---|---|---|
| ≥ 64 GiB (H100, H200, A100-80) | resident: `pipe.to("cuda")` | all ~46 GB of weights plus 720p activations fit (Wan 2.2: ≥ 96 GiB, two experts ~57 GB + UMT5) |
| 40–64 GiB (A6000, L40S, A100-40) | `enable_model_cpu_offload()` | the 33 GB transformer stays while it samples; the text encoder leaves the GPU after encoding (Wan 2.2: one expert at a time, the high-noise one leaves when the low-noise one starts) |
| < 40 GiB (24 GB and 16 GB cards) | `enable_group_offload(leaf_level, use_stream=True)` + VAE tiling | layers stream from pinned RAM, overlapped with compute on a side stream; measured 68 GiB of host RAM (Wan 2.1) |
| < 40 GiB and host RAM under the model's `pinned_ram_min_gib` (80 GiB for Wan 2.1) | the same with `offload_to_disk_path` (`group_offload_disk`) for the transformer(s) and UMT5 | each layer group is written once to a safetensors file under STUDIO_MODELS_DIR/offload_scratch/wan and read back before it runs: neither is ever whole in RAM: each goes from its checkpoint to these files one tensor at a time (`layer_files.py`), so host RAM holds only CLIP and the VAE (~3 GB) and the page cache is left to the files; under STUDIO_OFFLOAD_WEIGHTS=auto the blocks' linears and UMT5's are int8, since every step reads the files again wherever the page cache cannot keep them (bf16 files, UMT5 pinned, on a 32 GiB machine: 11.5x the resident step); each linear's file also carries the name it gets once a user LoRA wraps it |

Resident on CUDA, the blocks are compiled (STUDIO_WAN_COMPILE, diffusers' `compile_repeated_blocks`,
`dynamic=True` so one compile serves every size; `pipeline/regional_compile.py`): the first Wan job's
first step compiles them. The user's LoRAs are fused into the weights for their job (`loras.py`), so
the compiled blocks run it; one that cannot be fused runs the blocks eagerly (PEFT's layers would
recompile every variant). The fast mode's LoRA is a hook the compiled blocks take in.
STUDIO_FP8_MATMUL (opt-in, as for FramePack) swaps the blocks' large linears for FP8 ones before they
compile; the fast mode's hooks move with them, and the user's LoRAs sit beside them (PEFT wraps them).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from backend.pipeline.loras import LoraSwitch
from backend.pipeline.loras import transformers as pipeline_transformers
from backend.utils.config import Settings
from backend.utils.progress import Progress, ProgressCallback

log = logging.getLogger(__name__)

GIB = 1024**3
RESIDENT_MIN_GIB = 64.0
MODEL_OFFLOAD_MIN_GIB = 40.0


def placement_for(
    device: str,
    vram_gib: float | None,
    resident_min_gib: float = RESIDENT_MIN_GIB,
    ram_gib: float | None = None,
    pinned_ram_min_gib: float = 0.0,
) -> str:
    """The placement rule above: "cpu", "resident", "model_offload", "group_offload" or
    "group_offload_disk" (a small GPU on a machine whose RAM cannot hold every weight pinned)."""
    if device != "cuda":
        return "cpu"
    if vram_gib is None or vram_gib >= resident_min_gib:
        return "resident"
    if vram_gib >= MODEL_OFFLOAD_MIN_GIB:
        return "model_offload"
    if ram_gib is not None and ram_gib < pinned_ram_min_gib:
        return "group_offload_disk"
    return "group_offload"


def dtypes_for(device: str) -> dict:
    import torch

    if device != "cuda":
        return {"default": torch.float32}
    return {"default": torch.bfloat16, "vae": torch.float32, "image_encoder": torch.float32}


def storage_8bit(settings: Settings, placement: str) -> str | None:
    """The 8-bit format the transformer's streamed blocks are stored in, or None for bf16.
    STUDIO_OFFLOAD_WEIGHTS as for FramePack: bf16 where host RAM holds the weights (auto), 8 bits
    (STUDIO_STORAGE_8BIT, int8 by default) on the disk placement under auto — there the bytes
    read from disk every step are the cost (measured: 11.5x the resident step with bf16 files
    on a 32 GiB machine) — and on either streamed placement when asked for (fp8)."""
    want = settings.offload_weights
    if placement == "group_offload_disk" and want != "bf16" or placement == "group_offload" and want == "fp8":
        return settings.storage_8bit
    return None


def on_disk(component: str) -> bool:
    """Whether `group_offload_disk` streams this pipeline component from layer files on disk: the
    transformer(s) and UMT5; CLIP and the VAE (~3 GB, run once per take) stay pinned in RAM."""
    return component.startswith("transformer") or component == "text_encoder"


def read(folder: Path, components: tuple[str, ...], device: str, placement: str, stored_8bit: str | None = None):
    """The pipeline in `folder` read for `placement`, and what `place` needs to finish it: on
    `group_offload_disk`, whose machines lack the host RAM to hold the transformer, the
    transformer(s) and the text encoder are built without weights (their large linears already
    8-bit with `stored_8bit`; UMT5's with int8 only) and go from their checkpoint to the layer files
    one tensor at a time, in `place` (`layer_files.py`)."""
    from diffusers import WanImageToVideoPipeline

    dtypes = dtypes_for(device)
    empty, checkpoints = {}, {}
    if placement == "group_offload_disk":
        from backend.pipeline.framepack.weight_storage import SafetensorsReader, safetensors_files
        from backend.pipeline.wan import layer_files

        for name in filter(on_disk, components):
            dtype = dtypes.get(name, dtypes["default"])
            if name == "text_encoder":
                empty[name] = layer_files.empty_text_encoder(folder, dtype, stored_8bit)
            else:
                empty[name] = layer_files.empty_transformer(folder, name, dtype, stored_8bit)
            checkpoints[name] = (SafetensorsReader(safetensors_files(str(folder), name)), dtype)
    pipe = WanImageToVideoPipeline.from_pretrained(str(folder), dtype=dtypes, **empty)
    return pipe, checkpoints


def place(pipe, device: str, placement: str, scratch: Path | None = None, checkpoints: dict | None = None) -> None:
    """Puts a built pipeline where `placement` says (diffusers' own offloading hooks);
    `group_offload_disk` writes the layer files of the `on_disk` components under `scratch`: from
    their tensors, or, for one built without weights (by `read`), from its checkpoint
    (`checkpoints`: component name → (reader, dtype)), or reuses those a previous load wrote from
    the same checkpoint (`layer_files.DiskLayers`)."""
    import torch

    if placement == "cpu":
        pipe.to("cpu")
    elif placement == "resident":
        pipe.to(device)
    elif placement == "model_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif placement in ("group_offload", "group_offload_disk"):
        disk = placement == "group_offload_disk"
        if disk:
            if scratch is None:
                raise ValueError("group_offload_disk needs a folder for its layer files")
            # Another model's folders (Wan 2.2's second expert under Wan 2.1) only take disk space.
            # (`components` names Wan 2.1's absent `transformer_2` too, as None.)
            keep = {name for name, part in pipe.components.items() if part is not None and on_disk(name)}
            for path in scratch.glob("*") if scratch.is_dir() else []:
                if path.name in keep:
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
        # diffusers' own per-component loop (`DiffusionPipeline.enable_group_offload`), the layers
        # of those `on_disk` names from files on this placement.
        for name, component in pipe.components.items():
            if not isinstance(component, torch.nn.Module):
                continue
            if disk and on_disk(name):
                group_offload(component, device, scratch / name, (checkpoints or {}).get(name))
            else:
                group_offload(component, device)
        pipe.vae.enable_tiling()
    else:
        raise ValueError(f"unknown placement {placement!r}")


def group_offload(component, device: str, folder: Path | None = None, checkpoint: tuple | None = None) -> None:
    """diffusers' leaf-level group offload of one component onto `device`, its layers streamed on a
    side stream from pinned RAM or, given `folder`, from layer files there (`layer_files.DiskLayers`:
    written from the component's tensors or from `checkpoint` = (reader, dtype), or reused)."""
    import torch
    from diffusers.hooks import apply_group_offloading

    from backend.pipeline.wan import layer_files

    kwargs: dict = dict(
        onload_device=torch.device(device),
        offload_device=torch.device("cpu"),
        offload_type="leaf_level",
        use_stream=device == "cuda",  # the side stream overlaps the copies with compute
    )
    layers = None
    if folder is not None:
        layers = layer_files.DiskLayers(component, folder, checkpoint)
        layers.before()
        # Pinned staging per layer group, not a pinned copy of every weight.
        kwargs.update(low_cpu_mem_usage=True, offload_to_disk_path=str(layers.folder))
    elif any(p.is_meta for p in component.parameters()):
        raise ValueError(f"{type(component).__name__} was built without weights: only layers on disk can be")
    if hasattr(component, "enable_group_offload"):
        component.enable_group_offload(**kwargs)
    else:
        apply_group_offloading(module=component, **kwargs)
    if layers is not None:
        layers.after()
        log.info("%s: layer files %s", folder.name, "reused" if layers.reused else "written")


class WanLoader:
    """Wan's pipeline once read and placed. Loads lazily, once, under a lock; a failed load is
    remembered for `describe()` and tried again by the next job."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pipe = None
        self.device = "cpu"
        self.placement = "unloaded"
        self.lora = None  # distill_lora.DistillLora when the fast mode's file(s) are on disk
        self.loras = LoraSwitch(settings.loras_dir)  # the user's LoRAs (pipeline/loras.py)
        self.compiled = False
        self.fp8_matmul = False
        self.stored_8bit: str | None = None  # int8/fp8 storage of the streamed layers (storage_8bit)
        self.load_seconds: dict[str, float] = {}
        self.load_error: str | None = None
        self._load_lock = threading.Lock()

    def describe(self) -> dict:
        from backend.utils.model_registry import wan_install_problem, wan_lora_missing, wan_model

        fast = not wan_lora_missing(self.settings)
        model = {"model": wan_model(self.settings).key, "model_label": wan_model(self.settings).label}
        if self.pipe is not None:
            return {
                **model,
                "ready": True,
                "loaded": True,
                "installed": True,
                "device": self.device,
                "memory_mode": self.placement,
                "fast_mode": self.lora is not None,
                "compiled": self.compiled,
                "fp8_matmul": self.fp8_matmul,
                "stored_8bit": self.stored_8bit,
                "reason": "loaded",
            }
        missing = wan_install_problem(self.settings)
        if missing is not None:
            return {
                **model,
                "ready": False,
                "loaded": False,
                "installed": False,
                "reason": missing.en,
                "reason_ko": missing.ko,
                "missing": missing.missing,
                "fix": missing.fix,
            }
        if self.load_error:
            return {**model, "ready": False, "loaded": False, "installed": True, "reason": self.load_error}
        return {
            **model,
            "ready": True,
            "loaded": False,
            "installed": True,
            "fast_mode": fast,
            "reason": "weights on disk; loads on the first Wan job",
        }

    def load(self, progress: ProgressCallback | None = None) -> None:
        with self._load_lock:
            if self.pipe is not None:
                return
            if progress:
                from backend.utils.model_registry import wan_model

                progress(Progress("load", 0.0, f"loading {wan_model(self.settings).label}"))
            try:
                self._load()
            except Exception as exc:
                self.load_error = f"loading Wan failed: {exc}"
                raise
            self.load_error = None
            if progress:
                progress(Progress("load", 1.0, f"Wan loaded ({self.placement})"))

    def _vram_gib(self, device: str) -> float | None:
        if device != "cuda":
            return None
        import torch

        free, total = torch.cuda.mem_get_info()
        vram = min(total, free + 0.25 * GIB) / GIB  # what others already use is not ours
        if self.settings.vram_limit_gib:
            vram = min(vram, float(self.settings.vram_limit_gib))
        return vram

    def _load(self) -> None:
        from backend.pipeline.framepack.loading import resolve_device
        from backend.utils.model_registry import wan_folder, wan_install_problem, wan_model

        missing = wan_install_problem(self.settings)
        if missing is not None:
            raise RuntimeError(missing.message)
        device, why = resolve_device(self.settings.device)
        model = wan_model(self.settings)
        placement = placement_for(
            device, self._vram_gib(device), model.resident_min_gib, self._ram_gib(), model.pinned_ram_min_gib
        )
        began = time.perf_counter()
        pipe, checkpoints = read(
            wan_folder(self.settings), model.components, device, placement, storage_8bit(self.settings, placement)
        )
        self.load_seconds["read"] = time.perf_counter() - began
        self.attach(pipe, device, placement, why, checkpoints)

    def _ram_gib(self) -> float:
        import psutil

        ram = psutil.virtual_memory().total / GIB
        return min(ram, float(self.settings.ram_limit_gib)) if self.settings.ram_limit_gib else ram

    def scratch_dir(self) -> Path:
        """Where `group_offload_disk` keeps its layer files (reused by the next load of the same
        checkpoint, `layer_files.DiskLayers`)."""
        return Path(self.settings.models_dir) / "offload_scratch" / "wan"

    def attach(self, pipe, device: str, placement: str, why: str = "", checkpoints: dict | None = None) -> None:
        """Places a built pipeline and hooks the fast mode's LoRA(s) when every file is here (Wan
        2.2: the high-noise file on `transformer`, the low-noise one on `transformer_2`). `load()`
        calls it after reading; the benchmark calls it with full-size random models, so both
        measure the same code."""
        from backend.pipeline.wan.distill_lora import DistillLora
        from backend.utils.model_registry import wan_lora_missing, wan_lora_paths

        pipe.set_progress_bar_config(disable=True)
        self.stored_8bit = storage_8bit(self.settings, placement)
        if self.stored_8bit:
            self._store_8bit(pipe, device, placement)
        self.lora = None
        if not wan_lora_missing(self.settings):
            # Before placement: the LoRA's buffers then travel with their layers under offloading.
            lora = DistillLora()
            for attr, lora_file in wan_lora_paths(self.settings).items():
                lora.attach(getattr(pipe, attr), lora_file)
            self.lora = lora
        began = time.perf_counter()
        place(pipe, device, placement, self.scratch_dir(), checkpoints)
        self.load_seconds["place"] = time.perf_counter() - began
        self.pipe, self.device, self.placement = pipe, device, placement
        self.loras = LoraSwitch(self.settings.loras_dir, device)
        self.fp8_matmul = self._fp8()
        self.compiled = self._compile()
        log.info(
            "Wan on %s (%s): %s%s, fast mode %s, compiled %s, fp8 matmul %s",
            device,
            why or device,
            placement,
            f" ({self.stored_8bit} weights)" if self.stored_8bit else "",
            self.lora is not None,
            self.compiled,
            self.fp8_matmul,
        )

    def _store_8bit(self, pipe, device: str, placement: str) -> None:
        """The streamed blocks' large linears in 8 bits (before the fast mode's hooks, which go on
        the layers as they will run); on the disk placement UMT5's too (int8), whose layer files
        are then half the bytes. Layers already 8-bit (built so by `read`) stay."""
        from backend.pipeline.framepack import weight_storage
        from backend.pipeline.wan import layer_files

        work = device if device == "cuda" else None  # a GPU quantises 14 B weights in seconds
        for transformer in pipeline_transformers(pipe):
            layer_files.store_blocks_8bit(transformer, self.stored_8bit, work_device=work)
        # int8 only: T5's feed-forward casts its input to `wo`'s weight dtype unless that is int8.
        text = getattr(pipe, "text_encoder", None)
        if placement == "group_offload_disk" and text is not None and self.stored_8bit == "int8":
            weight_storage.store_linears_8bit(text, "int8", work, weight_storage.MIN_WEIGHT_NUMEL)

    def transformers(self) -> list:
        """The pipeline's transformer(s): one, or Wan 2.2's two experts."""
        return pipeline_transformers(self.pipe)

    def repeated_blocks(self) -> list:
        """Every transformer block (`_repeated_blocks`: the modules compile and FP8 work on)."""
        return [m for t in self.transformers() for m in t.modules() if type(m).__name__ in t._repeated_blocks]

    def _fp8(self) -> bool:
        """STUDIO_FP8_MATMUL, resident on an Ada/Hopper GPU: the blocks' large linears multiply in
        FP8 (`accel.Fp8Linear`, per-channel weight scales, per-token activation scales); the fast
        mode's LoRA hooks move onto them. Not bit-exact: benchmarks/README.md gives the error."""
        if not self.settings.fp8_matmul or self.placement != "resident":
            return False
        from backend.pipeline.framepack import accel

        if not accel.fp8_matmul_supported():
            log.warning("STUDIO_FP8_MATMUL needs an Ada or Hopper GPU; Wan runs bf16 matmuls")
            return False
        return accel.convert_fp8_linears(None, within=self.repeated_blocks()) > 0

    def _compile(self) -> bool:
        from backend.pipeline import regional_compile

        want = self.settings.wan_compile
        if want == "off" or self.placement != "resident":
            return False
        available, reason = regional_compile.compile_available()
        if not available:
            if want == "on":
                raise RuntimeError(f"STUDIO_WAN_COMPILE=on but {reason}")
            return False
        regional_compile.use_compile_cache(self.settings.models_dir / "torch_compile_cache")
        for transformer in self.transformers():
            transformer.compile_repeated_blocks(dynamic=True)
        return True

    def eager_blocks(self):
        """The blocks run eagerly inside this context when they were compiled (a job whose LoRAs
        stay beside the layers)."""
        import contextlib

        if not self.compiled:
            return contextlib.nullcontext()
        from backend.pipeline import regional_compile

        return regional_compile.eager(self.repeated_blocks())

    def release(self) -> None:
        with self._load_lock:
            if self.pipe is None:
                return
            if self.lora is not None:
                self.lora.detach()
            self.pipe, self.lora, self.placement, self.compiled, self.fp8_matmul = None, None, "unloaded", False, False
            self.loras = LoraSwitch(self.settings.loras_dir)
            import gc

            gc.collect()
            if self.device == "cuda":
                import torch

                torch.cuda.empty_cache()
