"""Regional `torch.compile` shared by the engines: compile each repeated transformer block, not the
whole model (the blocks share code, so inductor compiles one and reuses it; the model's own Python
between the blocks stays eager). FramePack compiles its 60 blocks (`framepack/accel.py`), Wan its 40
`WanTransformerBlock`s through diffusers' own `compile_repeated_blocks` (`wan/wan_loading.py`).

Compiled blocks are not bit-identical to eager ones (inductor fuses the fp32 norm/modulation/RoPE
arithmetic): the benchmarks report the difference next to the speed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path


def compile_available() -> tuple[bool, str]:
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    try:
        import triton  # noqa: F401
    except ImportError:
        return False, "Triton is not installed"
    return True, "ok"


def use_compile_cache(directory: Path) -> None:
    """Keeps inductor's compiled kernels across processes (first job after a restart stays fast)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(directory))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


@contextlib.contextmanager
def eager(modules: Iterable):
    """Runs compiled modules eagerly inside the block (their compiled code stays cached): for jobs
    whose layers change in ways that would recompile every variant (a user's PEFT LoRA, an fp32
    re-run)."""
    saved = [(m, getattr(m, "_compiled_call_impl", None)) for m in modules]
    for module, _ in saved:
        module._compiled_call_impl = None
    try:
        yield
    finally:
        for module, compiled in saved:
            module._compiled_call_impl = compiled
