"""MagCache: skip whole transformer forwards whose residual the previous one predicts well.

MagCache (Ma et al. 2025, "MagCache: Fast Video Generation with Magnitude-Aware Cache") rests on
one observation: the ratio of the norms of the transformer's residual (output minus input of the
block stack) at consecutive denoising steps follows the same curve for every prompt and input, so
a curve calibrated once per model tells in advance how much the residual is about to change. Where
it barely changes, a step reuses the last computed residual instead of running the 60 blocks:

    input embedding → [blocks: h' = h + r] → norm + projection         (computed step: r stored)
    input embedding → [h' = h + r_last]    → norm + projection         (skipped step)

Skipping is decided from the curve alone, never from the data: with the retention ratio ρ the
first ⌊ρ·steps⌋ steps (and step 0) always compute (they set the layout of the video); after that a
step is skipped while the error accumulated since the last computed step, Σ |1 − Π ratios|, stays
within the threshold, no more than K steps in a row are skipped, and the step's own ratio is
within 6% of 1 (the authors' per-step bound for FramePack). A computed step resets the
accumulators. The skip pattern of a job is therefore known before it starts and the same for every
section (each section starts from fresh noise), which is what makes its speed-up measurable with
random weights, and what a test can pin down exactly.

Calibration: the per-step magnitude ratios the MagCache authors published for FramePack's image
to video model at 25 steps (their FramePack integration, FramePack pull request #673, measured on
one prompt with the released weights). The studio runs fewer steps at the low end of the quality
slider. Each ratio is a step-to-step quantity, so a coarser schedule's step spans several of the
calibrated ones: the ratios are turned into the log-magnitude curve (the running sum of their
logs over the calibrated step positions i/25 of the unshifted schedule), that curve is linearly
interpolated at the coarse schedule's positions i/N, and each coarse ratio is exp of the curve's
difference between consecutive positions. At 25 steps that returns the published ratios exactly.
(Sampling the nearest published ratio instead, as the authors' demo does, reuses one fine-step
ratio for a step three times as long at 8 steps and so underestimates the change being skipped.)
Both schedules are `linspace(1, 0, N + 1)` before the same resolution shift, so position i/N is
the same noise level in both. The authors calibrated with FramePack's UniPC sampler; the studio
samples with diffusers' flow-matching Euler scheduler on the same sigmas.

This is a quality-for-speed trade: a skipped step's output is an estimate, not the model's.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

# Norm ratio of the residual at step i to the one at step i-1, for FramePack at 25 steps; the
# first entry stands for step 0, which has no predecessor (always computed).
FRAMEPACK_MAG_RATIOS = (
    1.0,
    1.26562,
    1.23438,
    1.03125,
    1.02344,
    1.03906,
    1.01562,
    1.03906,
    1.05469,
    1.02344,
    1.03906,
    0.99609,
    1.03125,
    1.02344,
    1.01562,
    1.02344,
    1.00781,
    1.04688,
    0.98828,
    1.0,
    1.00781,
    0.98828,
    0.94141,
    0.94141,
    0.78906,
)
CALIBRATED_STEPS = len(FRAMEPACK_MAG_RATIOS)
# The authors' FramePack limit on one step's own change: a bigger jump is never skipped.
MAX_STEP_CHANGE = 0.06


@dataclass(frozen=True)
class MagCacheConfig:
    """threshold: accumulated error allowed between computed steps; max_skips: K, the most steps
    skipped in a row; retention: the leading fraction of steps that always compute."""

    threshold: float
    max_skips: int = 3
    retention: float = 0.2

    def cache_value(self) -> str:
        """The job parameter's spelling, `magcache:threshold:K:retention`."""
        return f"magcache:{self.threshold:g}:{self.max_skips}:{self.retention:g}"


# The studio's fast mode (smart_params.DRAFT_CACHE, which a test keeps equal; the job layer does
# not import this torch module): the faster of the authors' two FramePack settings.
FAST_MODE = MagCacheConfig(0.15, 4, 0.2)


def parse_cache(value: str) -> MagCacheConfig | None:
    """A job's `cache` parameter → its MagCache config, or None for "off".

    Jobs stored before MagCache carry `first_block_cache:<t>` (the earlier draft cache): they get
    the studio's draft MagCache instead, the mode that replaced it.
    """
    value = (value or "off").strip()
    if value == "off":
        return None
    name, _, rest = value.partition(":")
    if name == "first_block_cache":
        return FAST_MODE
    if name != "magcache":
        raise ValueError(f"unknown cache {value!r} (expected 'off' or 'magcache:threshold[:K[:retention]]')")
    parts = [p for p in rest.split(":") if p]
    if not parts:
        raise ValueError(f"cache {value!r} names no threshold")
    threshold = float(parts[0])
    max_skips = int(parts[1]) if len(parts) > 1 else 3
    retention = float(parts[2]) if len(parts) > 2 else 0.2
    if threshold < 0 or max_skips < 0 or not 0 <= retention <= 1:
        raise ValueError(f"cache {value!r}: threshold ≥ 0, K ≥ 0 and 0 ≤ retention ≤ 1")
    return MagCacheConfig(threshold, max_skips, retention)


def mag_ratios(steps: int, calibrated: tuple[float, ...] = FRAMEPACK_MAG_RATIOS) -> list[float]:
    """The step-to-step magnitude ratios for a schedule of `steps` steps (see the module doc)."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    n = len(calibrated)
    if steps == n:
        return [float(r) for r in calibrated]
    curve = np.concatenate([[0.0], np.cumsum(np.log(np.asarray(calibrated[1:], dtype=np.float64)))])
    positions = np.arange(steps, dtype=np.float64) * n / steps  # step i at noise position i/steps
    log_mag = np.interp(positions, np.arange(n, dtype=np.float64), curve)
    return [1.0] + [float(math.exp(b - a)) for a, b in zip(log_mag, log_mag[1:])]


def skip_pattern(steps: int, config: MagCacheConfig, ratios: list[float] | None = None) -> tuple[bool, ...]:
    """Which of a section's `steps` steps reuse the cached residual (True) instead of computing."""
    ratios = ratios if ratios is not None else mag_ratios(steps)
    keep = max(1, int(config.retention * steps))
    skips = []
    product, error, run = 1.0, 0.0, 0
    for i in range(steps):
        skip = False
        if i >= keep:
            product *= ratios[i]
            error += abs(1.0 - product)
            run += 1
            if error <= config.threshold and run <= config.max_skips and abs(1.0 - ratios[i]) <= MAX_STEP_CHANGE:
                skip = True
            else:  # this step computes: what it stores is the new reference
                product, error, run = 1.0, 0.0, 0
        skips.append(skip)
    return tuple(skips)


class _Reuse:
    """Stands in for the whole block stack on a skipped step."""

    def __init__(self, residual: torch.Tensor) -> None:
        self.residual = residual

    def __call__(self, hidden_states, encoder_hidden_states, *args):
        return hidden_states + self.residual, encoder_hidden_states


class _First:
    """The first block of a computed step: keeps the stack's input."""

    def __init__(self, block: nn.Module, state: _Forward) -> None:
        self.block, self.state = block, state

    def __call__(self, hidden_states, *args):
        self.state.input = hidden_states
        return self.block(hidden_states, *args)


class _Last:
    """The last block of a computed step: stores the stack's residual for the steps after it."""

    def __init__(self, block: nn.Module, state: _Forward) -> None:
        self.block, self.state = block, state

    def __call__(self, *args):
        hidden_states, encoder_hidden_states = self.block(*args)
        self.state.store(hidden_states)
        return hidden_states, encoder_hidden_states


@dataclass
class _Forward:
    """One transformer call under the cache: its branch and whether it reuses."""

    cache: MagCache
    branch: str
    reuse: bool
    input: torch.Tensor | None = None

    def store(self, output: torch.Tensor) -> None:
        self.cache._residuals[self.branch] = output - self.input
        self.input = None


class _GatedBlocks(nn.ModuleList):
    """The transformer's block lists while a MagCache is attached (the same object, its class
    swapped): outside a cached forward they iterate as before; inside one they yield the blocks
    wrapped to record the residual, or on a skipped step one stand-in for the whole stack.

    The blocks themselves are untouched (their compiled code is used as is): the gate sits in the
    model's Python loop over the list, which is not compiled.
    """

    def __iter__(self) -> Iterator:
        cache: MagCache | None = self.__dict__.get("_studio_magcache")
        forward = cache._current if cache is not None else None
        if forward is None:
            return super().__iter__()
        return cache._blocks_for(self, forward)


@dataclass
class MagCache:
    """Applies a `skip_pattern` to a transformer's forwards, section by section.

    Use: `with cache.attached(transformer):`, then per section `cache.section_start()` and around
    each forward `with cache.forward(step, branch):` (branch "cond" / "uncond" keep separate
    residuals under true CFG). `sections` records the skipped step indices of each section.
    """

    config: MagCacheConfig
    steps: int
    skips: tuple[bool, ...] = field(init=False)
    sections: list[list[int]] = field(default_factory=list, init=False)
    _residuals: dict = field(default_factory=dict, init=False, repr=False)
    _current: _Forward | None = field(default=None, init=False, repr=False)
    _lists: tuple = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        self.skips = skip_pattern(self.steps, self.config)

    @property
    def skipped_per_section(self) -> int:
        return sum(self.skips)

    @contextlib.contextmanager
    def attached(self, transformer: nn.Module):
        lists = (transformer.transformer_blocks, transformer.single_transformer_blocks)
        saved = [(blocks, blocks.__class__) for blocks in lists]
        for blocks in lists:
            if type(blocks) is not nn.ModuleList:
                raise RuntimeError(f"another cache is attached to the transformer ({type(blocks).__name__})")
        self._lists = lists
        for blocks in lists:
            blocks.__class__ = _GatedBlocks
            blocks.__dict__["_studio_magcache"] = self
        try:
            yield self
        finally:
            for blocks, cls in saved:
                blocks.__class__ = cls
                blocks.__dict__.pop("_studio_magcache", None)
            self._lists = ()
            self._residuals.clear()
            self._current = None

    def section_start(self) -> None:
        """A new section: fresh noise, so nothing cached in the previous one applies."""
        self._residuals.clear()
        self.sections.append([])

    @contextlib.contextmanager
    def forward(self, step: int, branch: str = "cond"):
        reuse = self.skips[step] and branch in self._residuals
        if reuse and self.sections and (not self.sections[-1] or self.sections[-1][-1] != step):
            self.sections[-1].append(step)
        self._current = _Forward(self, branch, reuse)
        try:
            yield reuse
        finally:
            self._current = None

    def _blocks_for(self, blocks: nn.ModuleList, forward: _Forward) -> Iterator:
        first_list, last_list = self._lists[0], self._lists[1]
        if not len(first_list):
            first_list = last_list
        if not len(last_list):
            last_list = first_list
        if forward.reuse:
            if blocks is first_list:
                yield _Reuse(self._residuals[forward.branch])
            return
        items = list(nn.ModuleList.__iter__(blocks))
        for j, block in enumerate(items):
            call = block
            if blocks is last_list and j == len(items) - 1:
                call = _Last(block, forward)
            if blocks is first_list and j == 0:
                call = _First(call, forward)
            yield call


__all__ = [
    "CALIBRATED_STEPS",
    "FAST_MODE",
    "FRAMEPACK_MAG_RATIOS",
    "MagCache",
    "MagCacheConfig",
    "mag_ratios",
    "parse_cache",
    "skip_pattern",
]
