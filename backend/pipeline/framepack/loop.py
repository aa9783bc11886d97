"""The studio's own section loop for FramePack first + last frame sampling.

It computes what diffusers' `HunyuanVideoFramepackPipeline.__call__` computes with
`sampling_type="inverted_anti_drifting"` (same random draws, schedule, conditioning and overlap
blend; a CPU test checks the frames match), reusing the pipeline's encoders, latent preparation
and scheduler. Owning the loop lets the studio:

- stream each decoded section off the GPU the moment it exists: the pipeline keeps the whole video
  as bf16 pixels on the GPU and re-concatenates it every section (VRAM grows with video length);
  here the GPU holds one section at a time and the history latents stay bounded;
- encode prompt and images first and then, in offload mode, move the encoders off the GPU before
  sampling starts (`Placement`);
- set the image embedding per section (the start→end strength schedule) without hooks;
- report every step and stop within one (the callback may raise `JobCancelled`);
- run the fast mode's MagCache (`magcache.py`): tell it each section's start, whose noise starts
  afresh, and each forward's step, whose skip it decides.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from backend.contracts import messages

# The released FramePack checkpoints' history layout for inverted anti-drifting sampling:
# 1 latent frame at full rate, 2 at 2x compression, 16 at 4x.
HISTORY_SIZES = (1, 2, 16)


class Placement(Protocol):
    """Where encoders live around a job: offload mode onloads them only while encoding."""

    def encoders_on(self) -> None: ...

    def encoders_off(self) -> None: ...


class _StayPut:
    def encoders_on(self) -> None:
        pass

    def encoders_off(self) -> None:
        pass


@dataclass
class Conditioning:
    prompt_embeds: torch.Tensor
    prompt_mask: torch.Tensor
    pooled: torch.Tensor
    negative: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    embed_a: torch.Tensor  # SigLIP embedding of the first image
    embed_b: torch.Tensor  # and of the last image
    latents_a: torch.Tensor  # VAE latents (float32) of the first image
    latents_b: torch.Tensor  # and of the last image
    # A timed prompt's later prompts, each (embeds, mask, pooled) like the first's above.
    more_prompts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    # Keyframes inside the transition: generated section g → the VAE latent that replaces its clean
    # 1x history anchor (the frame just after the section), as `latents_b` does for g = 0.
    anchors: dict[int, torch.Tensor] = field(default_factory=dict)


def encode(
    pipe,
    image_a,
    image_b,
    prompt: str,
    height: int,
    width: int,
    true_cfg: float,
    generator: torch.Generator,
    device: torch.device,
    placement: Placement | None = None,
    more_prompts: tuple[str, ...] = (),
) -> Conditioning:
    """Text, image and VAE conditioning for one transition, in the pipeline's order of random draws.

    `device` is explicit: with offloaded encoders the pipeline's own guess would say "cpu".
    `more_prompts` (a timed prompt's later texts) are encoded in the same onload, after the images,
    so the random draws of a plain prompt are unchanged.
    """
    placement = placement or _StayPut()
    dtype = pipe.transformer.dtype
    placement.encoders_on()
    try:
        embeds, pooled, mask = pipe.encode_prompt(prompt=prompt or "", device=device)
        negative = None
        if true_cfg > 1:
            # FramePack's own demo: an empty negative prompt when real CFG is on.
            n_embeds, n_pooled, n_mask = pipe.encode_prompt(prompt="", device=device)
            negative = (n_embeds.to(dtype), n_mask.to(dtype), n_pooled.to(dtype))
        pixels_a = pipe.video_processor.preprocess(image_a, height, width)
        pixels_b = pipe.video_processor.preprocess(image_b, height, width)
        embed_a = pipe.encode_image(pixels_a, device=device).to(dtype)
        embed_b = pipe.encode_image(pixels_b, device=device).to(dtype)
        latents_a = pipe.prepare_image_latents(pixels_a, dtype=torch.float32, device=device, generator=generator)
        latents_b = pipe.prepare_image_latents(pixels_b, dtype=torch.float32, device=device, generator=generator)
        more = []
        for text in more_prompts:
            m_embeds, m_pooled, m_mask = pipe.encode_prompt(prompt=text, device=device)
            more.append((m_embeds.to(dtype), m_mask.to(dtype), m_pooled.to(dtype)))
    finally:
        placement.encoders_off()
    return Conditioning(
        embeds.to(dtype), mask.to(dtype), pooled.to(dtype), negative, embed_a, embed_b, latents_a, latents_b, more
    )


def latent_paddings(sections: int) -> list[int]:
    """Empty latent windows between the first image and each generated section (end-first order)."""
    if sections > 4:
        return [3] + [2] * (sections - 3) + [1, 0]
    return list(reversed(range(sections)))


class _FrameJoiner:
    """Prepends decoded sections (they arrive end-first) with the pipeline's linear overlap blend.

    The blend and the conversion to uint8 run where the frames were decoded (the GPU on CUDA), in
    float32 with one operation per step, as numpy did them on the host before (the same bytes);
    only finished uint8 frames come to the host (a quarter of float32's bytes, no host arithmetic).
    The head that the next section blends into stays float32 on the device; finished frames are
    kept as uint8 on the CPU, so host memory grows by 1 byte per pixel value.
    """

    def __init__(self, overlap: int) -> None:
        self.overlap = overlap
        self.head: torch.Tensor | None = None  # float32 [-1, 1], the earliest `overlap` frames
        self.tail: list[np.ndarray] = []  # uint8, in temporal order after head

    @staticmethod
    def to_uint8(frames: torch.Tensor) -> np.ndarray:
        # The pipeline's postprocess ((x / 2 + 0.5).clamp(0, 1)) then the studio's * 255 + 0.5.
        return ((frames / 2 + 0.5) * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8).cpu().numpy()

    def prepend(self, section: torch.Tensor) -> None:
        """section: (T, H, W, 3) float32 in [-1, 1], on any device."""
        n = self.overlap
        head = None if self.head is None else self.head.to(section.device)
        if head is None:
            body = section
        elif n <= 0 or section.shape[0] < n or head.shape[0] < n:
            body = torch.cat([section, head])
        else:
            weights = torch.from_numpy(np.linspace(1, 0, n, dtype=np.float32)[:, None, None, None])
            weights = weights.to(section.device)
            blended = weights * section[-n:] + (1 - weights) * head[:n]
            body = torch.cat([section[:-n], blended, head[n:]])
        keep = min(n, body.shape[0]) if n > 0 else 0
        if body.shape[0] > keep:
            self.tail.insert(0, self.to_uint8(body[keep:]))
        self.head = body[:keep].clone() if keep else body[:0]

    def frames(self) -> np.ndarray:
        parts = ([self.to_uint8(self.head)] if self.head is not None and len(self.head) else []) + self.tail
        return np.concatenate(parts) if parts else np.zeros((0, 1, 1, 3), np.uint8)


def _section_frames(video: torch.Tensor) -> torch.Tensor:
    """(1, 3, T, H, W) decoded pixels → (T, H, W, 3) float32, where they were decoded."""
    return video[0].permute(1, 2, 3, 0).float()


def _mask_on_host(prompt: tuple, device: torch.device) -> tuple:
    """The prompt with its attention mask on the host (pinned on CUDA), for `_masks_from_host`."""
    embeds, mask, pooled = prompt
    mask = mask.to("cpu")
    return embeds, (mask.pin_memory() if device.type == "cuda" else mask), pooled


@contextlib.contextmanager
def _masks_from_host(transformer):
    """Lets a forward take its text attention mask from the host without a device sync.

    The transformer trims the text tokens to the mask's sum (`[:, : mask.sum()[0]]`): with the mask
    on the GPU that index is a device-to-host read, so every forward waited for the GPU to drain
    and the host could not queue the next forward's work ahead. With the mask on the host the sum
    is read there; the text embedder, the one module that computes with the mask, gets a copy on
    its input's device (pinned, so the copy is queued, not waited for). Same values, same result.
    """
    embedder = getattr(transformer, "context_embedder", None)
    if embedder is None:
        yield
        return

    def to_device(_module, args, kwargs):
        if len(args) >= 3 and isinstance(args[2], torch.Tensor) and args[2].device != args[0].device:
            args = (*args[:2], args[2].to(args[0].device, non_blocking=True), *args[3:])
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and args and mask.device != args[0].device:
            kwargs = {**kwargs, "attention_mask": mask.to(args[0].device, non_blocking=True)}
        return args, kwargs

    handle = embedder.register_forward_pre_hook(to_device, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _decode(vae, latents: torch.Tensor, safe: bool) -> torch.Tensor:
    if not safe:
        return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    from backend.pipeline.framepack.compute_dtype import UpcastWeights

    with UpcastWeights():
        return vae.decode(latents.float() / vae.config.scaling_factor, return_dict=False)[0]


class _SectionFinisher:
    """Decodes each sampled section, brings it to the host, joins it and reports it.

    Inline (`overlap=False`) it does so before the next section starts, as the pipeline does.
    With `overlap=True` one background thread does it in submission order while the main thread
    samples the next section, on a second CUDA stream that waits for the section's latents; the
    arithmetic is the same, so the frames are too. A failure there (an overflow that fp32 cannot
    fix, a cancel raised by the section callback) is raised in the main thread at the next section
    or at the end.
    """

    def __init__(self, vae, sections: int, joiner: _FrameJoiner, on_section, warn, overlap: bool) -> None:
        self.vae, self.sections, self.joiner = vae, sections, joiner
        self.on_section, self.warn = on_section, warn
        self.pool = None
        self.pending: list = []
        self.stream = None
        if overlap:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="framepack-decode")
            if vae.device.type == "cuda":
                self.stream = torch.cuda.Stream(device=vae.device)
        self.abandoned = False

    def submit(self, g: int, latents: torch.Tensor) -> None:
        if self.pool is None:
            self.finish(g, latents)
            return
        ready = None
        if self.stream is not None:
            ready = torch.cuda.Event()
            ready.record()  # on the sampling stream: the section's latents are written after it
            latents.record_stream(self.stream)  # the allocator must not reuse them before the decode
        self.pending.append(self.pool.submit(self._finish_on_stream, g, latents, ready))

    def _finish_on_stream(self, g: int, latents: torch.Tensor, ready) -> None:
        if self.abandoned:
            return
        # Grad mode and the current stream are per thread: set both here.
        with torch.no_grad():
            if self.stream is None:
                self.finish(g, latents)
                return
            with torch.cuda.stream(self.stream):
                self.stream.wait_event(ready)
                self.finish(g, latents)

    def finish(self, g: int, latents: torch.Tensor) -> None:
        from backend.pipeline.framepack.compute_dtype import finite

        vae, sections = self.vae, self.sections
        video = _decode(vae, latents, safe=False)
        if not finite(video):
            self.warn(
                _overflow_message(g, sections, f"VAE {vae.dtype}".replace("torch.", ""), "fp32", "decoded frames")
            )
            video = _decode(vae, latents, safe=True)
            if not finite(video):
                raise FloatingPointError(_overflow_message(g, sections, "fp32 VAE", None, "decoded frames"))
        section = _section_frames(video)
        del video
        self.joiner.prepend(section)
        if not self.abandoned:
            self.on_section(g + 1, self.joiner.frames())

    def raise_failure(self) -> None:
        """Re-raises the first background failure, if a finished section had one."""
        for future in self.pending:
            if future.done() and future.exception() is not None:
                raise future.exception()

    def close(self) -> np.ndarray:
        """Waits for every section; all frames, in temporal order."""
        try:
            for future in self.pending:
                future.result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
        return self.joiner.frames()

    def abandon(self) -> None:
        """The job stopped: no more reports; the section being decoded finishes, the rest are dropped."""
        self.abandoned = True
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _NoCache:
    def section_start(self) -> None:
        pass

    def forward(self, step: int, branch: str = "cond"):
        return contextlib.nullcontext(False)


StepCallback = Callable[[int, int], None]  # (generated section index, step index)
SectionCallback = Callable[[int, np.ndarray], None]  # (sections decoded so far, frames so far)


def sample_sections(
    pipe,
    cond: Conditioning,
    *,
    height: int,
    width: int,
    sections: int,
    window: int,
    steps: int,
    distilled_guidance: float,
    true_cfg: float,
    generator: torch.Generator,
    device: torch.device,
    image_embeds_for: Callable[[int], torch.Tensor],
    on_step: StepCallback,
    on_section: SectionCallback,
    section_start: Callable[[int], None] | None = None,
    policy=None,
    on_warning: Callable[[str], None] | None = None,
    step_cache=None,
    prompt_for: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
    overlap_decode: bool = False,
) -> np.ndarray:
    """Samples `sections` windows end-first and returns (n, H, W, 3) uint8 frames, n = sections·4·window + 1.

    `image_embeds_for(g)` gives the SigLIP embedding for generated section g (g = 0 is the last
    temporal section). `on_section` receives all frames decoded so far after every section.
    `policy` (`compute_dtype.ComputePolicy`) says how the transformer computes; a section whose
    latents (or decoded frames) hold inf or NaN is re-run once in its safer dtype, with a warning
    through `on_warning`, and a second failure raises: never a silent black or noisy video.
    `step_cache` (a `magcache.MagCache` attached to the transformer) may skip forwards.
    `prompt_for(g)` gives generated section g's (embeds, mask, pooled) for a timed prompt; without
    it every section has the one prompt of `cond`.
    `overlap_decode` decodes, copies, joins and reports each section on a background thread (and,
    on CUDA, a second stream) while the next section denoises: the frames are the same, the GPU no
    longer waits for the host's share of a section. It needs VRAM for a decode beside a step, so
    the engine turns it on for the resident plan only.
    """
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_framepack import (
        calculate_shift,
        retrieve_timesteps,
    )

    from backend.pipeline.framepack.compute_dtype import ComputePolicy, finite

    transformer, vae, scheduler = pipe.transformer, pipe.vae, pipe.scheduler
    dtype = transformer.dtype
    policy = policy or ComputePolicy("fp32" if dtype == torch.float32 else "bf16", device.type)
    warn = on_warning or (lambda message: None)
    channels = transformer.config.in_channels
    t_scale = pipe.vae_scale_factor_temporal
    s_scale = pipe.vae_scale_factor_spatial
    window_frames = (window - 1) * t_scale + 1
    joiner = _FrameJoiner(window_frames)
    history_len = max(sum(HISTORY_SIZES), 2 * window + 1)
    # Only the newest `history_len` latent frames are ever read again (as clean history or as the
    # decode context of the next section), so the history does not grow with video length.
    history = torch.zeros(
        1, channels, history_len, height // s_scale, width // s_scale, device=device, dtype=torch.float32
    )
    # Rounded like the pipeline: the scale in the model dtype, then times 1000.
    guidance = torch.tensor([distilled_guidance], dtype=dtype, device=device) * 1000.0
    paddings = latent_paddings(sections)
    sigmas = np.linspace(1.0, 0.0, steps + 1)[:-1]
    negative = cond.negative if true_cfg > 1 and cond.negative is not None else None
    cfg_scale = float(true_cfg)
    cache = step_cache or _NoCache()

    def sample_one(g: int, run) -> torch.Tensor:
        """The final latents of generated section g, computed under `run` (a ComputePolicy)."""
        pad = paddings[g] * window
        # On the device: the transformer moves frame indices there every forward, and a copy from
        # pageable host memory waits for the GPU to drain (as the mask's sum did, `_masks_from_host`).
        index = torch.arange(0, 1 + pad + window + sum(HISTORY_SIZES), device=device)
        idx_prefix, _, idx_latents, idx_1x, idx_2x, idx_4x = index.split([1, pad, window, *HISTORY_SIZES])
        idx_clean = torch.cat([idx_prefix, idx_1x])
        hist_1x, hist_2x, hist_4x = history[:, :, : sum(HISTORY_SIZES)].split(list(HISTORY_SIZES), dim=2)
        if g == 0:
            hist_1x = cond.latents_b  # the last image anchors the end of the video
        elif g in cond.anchors:
            hist_1x = cond.anchors[g]  # a keyframe anchors the end of this section
        x_dtype = run.input_dtype if run.name == "fp32" else dtype
        clean = torch.cat([cond.latents_a, hist_1x], dim=2).to(x_dtype)
        hist_2x, hist_4x = hist_2x.to(x_dtype), hist_4x.to(x_dtype)

        latents = pipe.prepare_latents(
            1,
            channels,
            height,
            width,
            window_frames,
            dtype=torch.float32,
            device=device,
            generator=generator,
            latents=None,
        )
        seq_len = latents.shape[2] * latents.shape[3] * latents.shape[4] / transformer.config.patch_size**2
        cfg = scheduler.config
        mu = calculate_shift(
            seq_len,
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
        timesteps, _ = retrieve_timesteps(scheduler, steps, device, sigmas=sigmas, mu=min(mu, math.log(7.0)))
        image_embeds = image_embeds_for(g).to(x_dtype)
        if section_start is not None:
            section_start(g)
        own = prompt_for(g) if prompt_for is not None else (cond.prompt_embeds, cond.prompt_mask, cond.pooled)
        prompt = _mask_on_host(tuple(t.to(x_dtype) for t in own), device)
        neg = None if negative is None else _mask_on_host(tuple(t.to(x_dtype) for t in negative), device)

        common = dict(
            image_embeds=image_embeds,
            indices_latents=idx_latents,
            guidance=guidance.to(x_dtype),
            latents_clean=clean,
            indices_latents_clean=idx_clean,
            latents_history_2x=hist_2x,
            indices_latents_history_2x=idx_2x,
            latents_history_4x=hist_4x,
            indices_latents_history_4x=idx_4x,
            return_dict=False,
        )
        cache.section_start()  # also for a re-run after an overflow: its noise starts afresh too
        for i, t in enumerate(timesteps):
            x = latents.to(x_dtype)
            timestep = t.expand(1)
            with run.context(), cache.forward(i, "cond"):
                noise = transformer(
                    hidden_states=x,
                    timestep=timestep,
                    encoder_hidden_states=prompt[0],
                    encoder_attention_mask=prompt[1],
                    pooled_projections=prompt[2],
                    **common,
                )[0]
            if neg is not None:
                with run.context(), cache.forward(i, "uncond"):
                    uncond = transformer(
                        hidden_states=x,
                        timestep=timestep,
                        encoder_hidden_states=neg[0],
                        encoder_attention_mask=neg[1],
                        pooled_projections=neg[2],
                        **common,
                    )[0]
                noise = uncond + cfg_scale * (noise - uncond)
            latents = scheduler.step(noise.float(), t, latents, return_dict=False)[0]
            on_step(g, i)
        return latents

    finisher = _SectionFinisher(vae, sections, joiner, on_section, warn, overlap=overlap_decode)
    run = policy
    try:
        with _masks_from_host(transformer):
            for g in range(sections):
                finisher.raise_failure()  # a decode that failed in the background stops the job here
                is_last = g == sections - 1  # the temporally first section, next to the first image
                rng_state = generator.get_state()
                # After an overflow the rest of the transition stays in the safer dtype: its other
                # sections see the same prompt and images, so they would likely overflow too.
                latents = sample_one(g, run)
                if not finite(latents):
                    safer = run.safer()
                    if safer is None:
                        raise FloatingPointError(_overflow_message(g, sections, run.name, None))
                    warn(_overflow_message(g, sections, run.name, safer.name))
                    generator.set_state(rng_state)  # the same noise: the same section, computed safely
                    run = safer
                    latents = sample_one(g, run)
                    if not finite(latents):
                        raise FloatingPointError(_overflow_message(g, sections, run.name, None))

                if is_last:
                    latents = torch.cat([cond.latents_a, latents], dim=2)
                new = latents.shape[2]
                history = torch.cat([latents, history], dim=2)[:, :, : max(history_len, new + window)]
                # The first decoded section stands alone; later ones decode with the previous section's
                # first `window` latents as context, whose frames the overlap blend then fades across.
                context = 0 if g == 0 else window
                finisher.submit(g, history[:, :, : new + context])
        frames = finisher.close()
    except BaseException:
        finisher.abandon()
        raise

    keep = (frames.shape[0] - 1) // t_scale * t_scale + 1
    return frames[:keep]


def _overflow_message(g: int, sections: int, dtype: str, safer: str | None, what: str = "latents") -> str:
    params = {"n": g + 1, "sections": sections, "dtype": dtype, "what": what}
    if safer:
        return messages.bilingual("overflow_retry", {**params, "safer": safer})
    return messages.bilingual("overflow_stopped", params)


__all__ = ["Conditioning", "Placement", "encode", "latent_paddings", "sample_sections"]
