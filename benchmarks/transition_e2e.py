"""The seconds a user waits for one FramePack transition: end to end and per part, plain vs ours.

Full-size random weights (as `framepack_gpu.py` builds them), resident, one process. The plain
diffusers `HunyuanVideoFramepackPipeline` and the studio's `FramePackEngine` run the same job:
2 sections × 25 steps at 640² (a 2.4 s transition), window 9, bf16. Nothing syncs the device per
step: the wall clock is read after a device sync at a job's start and end only, and the parts come
from CUDA events recorded at their edges (no waits), read after the job:

- encode: prompt, SigLIP and VAE encodes of both images;
- steps: each section from its first transformer forward to its last scheduler step;
- decode: every VAE decode (on the second stream when decodes overlap the next section);
- outside the steps: the job's wall time minus the sections' step spans: what a lever on the
  encodes, the decodes, the copies to the host, the joins and the previews can win.

Our job writes a preview mp4 after every section but the last, as the studio's runner does (the
plain pipeline has no previews). The levers, each a whole job (ours, cumulative):

- before: the text mask on the GPU (a device sync in every forward), inline decodes, each decoded
  section copied to the host in the VAE's dtype and joined there;
- no_sync: the mask on the host (`loop._masks_from_host`);
- overlap: plus each section's decode, host copy, join and preview on a background thread and a
  second CUDA stream while the next section denoises (`loop._SectionFinisher`);
- device_join: plus the overlap blend and the uint8 conversion on the GPU, only uint8 frames to the
  host (`loop._FrameJoiner`): the studio's resident default, which also runs the whole 25-step job
  ("ours") beside the plain pipeline's.
The lever jobs run `--lever-steps` (10) steps a section: the time outside the steps does not
depend on the step count, and four 25-step jobs would not fit one device call.

Then the take as the runner makes it from the final frames (`JobRunner._make_take`'s calls:
written as mp4, scored from the written file, tagged), one VAE decode of the whole latent video
(what "decode once at the end" would cost; not the pipeline's frames: no overlap blend), the fast
mode's time to the first preview, and with `--lora` the LoRA switch times and per-step overhead.

`--lora-plan offload` measures only the LoRA figures, under the streamed plan (the blocks' weights
in host RAM, streamed to the GPU each forward) for a `--vram-limit-gib` GPU, against no LoRA in the
same plan and process (issue 27's "per-step overhead of a LoRA in the streamed plan").

    python benchmarks/transition_e2e.py --out benchmarks/results/transition_e2e_h100.json   # GPU
    python benchmarks/transition_e2e.py --lora-plan offload --vram-limit-gib 8 --lever-steps 6 # GPU, LoRA streamed
    python benchmarks/transition_e2e.py --tiny --steps 2 --lever-steps 2                     # CPU smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.framepack_gpu import (  # noqa: E402
    FULL,
    PROMPT,
    TINY,
    engine_request,
    make_job,
    plain_call,
    save,
    studio_settings,
)
from tests.helpers.framepack_models import build_pipeline  # noqa: E402


class Timeline:
    """CUDA events (or host times on the CPU) at the edges of a job's parts; read after the job."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.spans: dict[str, list] = {}
        self.open: dict[str, list] = {}
        self.host: dict[str, float] = {}

    def _stamp(self):
        import torch

        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()  # on the calling thread's current stream
        return event

    def begin(self, part: str) -> None:
        self.open.setdefault(part, []).append(self._stamp())

    def end(self, part: str) -> None:
        start = self.open[part].pop()
        self.spans.setdefault(part, []).append((start, self._stamp()))

    def seconds(self, part: str) -> list[float]:
        out = []
        for a, b in self.spans.get(part, []):
            out.append(a.elapsed_time(b) / 1000.0 if self.cuda else b - a)
        return out

    def add_host(self, part: str, seconds: float) -> None:
        self.host[part] = self.host.get(part, 0.0) + seconds


@contextlib.contextmanager
def instrumented(pipe, timeline: Timeline):
    """Wraps the pipeline's encoders and VAE decode (on the instances) with timeline edges."""

    def wrap(owner, name: str, part: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            timeline.begin(part)
            try:
                return original(*args, **kwargs)
            finally:
                timeline.end(part)

        setattr(owner, name, timed)
        return owner, name

    wrapped = [
        wrap(pipe, "encode_prompt", "encode"),
        wrap(pipe, "encode_image", "encode"),
        wrap(pipe, "prepare_image_latents", "encode"),
        wrap(pipe.vae, "decode", "decode"),
    ]
    try:
        yield
    finally:
        for owner, name in wrapped:
            delattr(owner, name)


class SectionSteps:
    """A transformer pre-hook opens a section's step span at its first forward; `step_done` closes
    the span at the section's last step (`steps` per section)."""

    def __init__(self, transformer, timeline: Timeline, steps: int) -> None:
        self.timeline, self.steps, self.active = timeline, steps, False
        self.handle = transformer.register_forward_pre_hook(self._forward)

    def _forward(self, *_):
        if not self.active:
            self.timeline.begin("steps")
            self.active = True

    def step_done(self, step_index: int) -> None:
        if self.active and step_index + 1 == self.steps:
            self.timeline.end("steps")
            self.active = False

    def close(self) -> None:
        self.handle.remove()


def sync(cuda: bool) -> float:
    if cuda:
        import torch

        torch.cuda.synchronize()
    return time.perf_counter()


def parts(timeline: Timeline, total: float) -> dict:
    steps = timeline.seconds("steps")
    out = {
        "total_s": total,
        "encode_s": sum(timeline.seconds("encode")),
        "steps_s": sum(steps),
        "section_steps_s": steps,
        "decode_s": sum(timeline.seconds("decode")),
        "decodes_s": timeline.seconds("decode"),
        "outside_steps_s": total - sum(steps),
    }
    out["outside_steps_per_section_s"] = out["outside_steps_s"] / max(1, len(steps))
    out.update({f"host_{k}_s": v for k, v in timeline.host.items()})
    return out


def run_plain(pipe, job: dict, cuda: bool, steps: int, sections: int) -> dict:
    timeline = Timeline(cuda)
    counter = SectionSteps(pipe.transformer, timeline, steps)

    def on_step(_pipe, i, _t, _kw):
        counter.step_done(i)
        return {}

    try:
        with instrumented(pipe, timeline):
            start = sync(cuda)
            first = timeline._stamp()
            pipe(**plain_call(job, sections, steps), callback_on_step_end=on_step)
            total = sync(cuda) - start
    finally:
        counter.close()
    out = parts(timeline, total)
    ends = timeline.spans.get("decode", [])
    if ends:  # the plain pipeline's first section is ready when its first decode ends
        end = ends[0][1]
        out["first_section_s"] = first.elapsed_time(end) / 1000.0 if cuda else end - first
    return out


@contextlib.contextmanager
def lever(host_mask: bool, overlap: bool, gen, device_join: bool = True):
    """Ours with the no-sync mask, the overlapped decode and the join on the device each on or off
    (off: each decoded section comes to the host in the VAE's dtype and is joined there)."""
    from backend.pipeline.framepack import engine as engine_module
    from backend.pipeline.framepack import loop

    saved_mask = (loop._mask_on_host, loop._masks_from_host)
    saved_overlap = engine_module.FramePackEngine.overlap_decode
    saved_frames = loop._section_frames
    if not host_mask:
        loop._mask_on_host = lambda prompt, device: prompt
        loop._masks_from_host = lambda transformer: contextlib.nullcontext()
    if not device_join:
        loop._section_frames = lambda video: video[0].permute(1, 2, 3, 0).to("cpu").float()
    engine_module.FramePackEngine.overlap_decode = property(lambda self: overlap)
    try:
        yield
    finally:
        loop._mask_on_host, loop._masks_from_host = saved_mask
        loop._section_frames = saved_frames
        engine_module.FramePackEngine.overlap_decode = saved_overlap


@contextlib.contextmanager
def host_parts(timeline: Timeline):
    """Host seconds of the section copies and joins (whichever thread runs them)."""
    from backend.pipeline.framepack import loop

    section, prepend, frames = loop._section_frames, loop._FrameJoiner.prepend, loop._FrameJoiner.frames

    def timed(fn, part):
        def inner(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timeline.add_host(part, time.perf_counter() - began)

        return inner

    loop._section_frames = timed(section, "section_frames")  # the lever's, when one replaced it
    loop._FrameJoiner.prepend = timed(prepend, "join")
    loop._FrameJoiner.frames = timed(frames, "join")
    try:
        yield
    finally:
        loop._section_frames, loop._FrameJoiner.prepend, loop._FrameJoiner.frames = section, prepend, frames


def run_ours(gen, job: dict, cuda: bool, steps: int, sections: int, workdir: Path, cache: str = "off", loras=None):
    """One job through the engine; a preview mp4 after each section but the last, as the runner
    writes it (`JobRunner.write_preview`: veryfast, CRF 23)."""

    from backend.jobs.runner import PREVIEW_CRF
    from backend.utils.video_io import VideoWriter

    timeline = Timeline(cuda)
    counter = SectionSteps(gen.pipe.transformer, timeline, steps)
    seen: dict = {}
    start_box: dict = {}

    def progress(p) -> None:
        d = p.detail
        if "preview_frames" in d:
            seen.setdefault("first_section_s", time.perf_counter() - start_box["t"])
            if d["section"] != d["sections"]:
                began = time.perf_counter()
                with VideoWriter(workdir / f"preview_{d['section']}.mp4", 30, crf=PREVIEW_CRF, preset="veryfast") as w:
                    w.write(d["preview_frames"])
                timeline.add_host("preview_write", time.perf_counter() - began)
        elif "step" in d:
            counter.step_done(d["step"] - 1)

    segment, params = engine_request(job, sections, steps, cache)
    if loras is not None:
        segment["loras"] = loras
    try:
        with instrumented(gen.pipe, timeline), host_parts(timeline):
            start = sync(cuda)
            start_box["t"] = start
            frames = gen.generate(job["first"], job["last"], PROMPT, segment, params, progress)
            total = sync(cuda) - start
    finally:
        counter.close()
    out = parts(timeline, total)
    out.update(seen, frames=int(frames.shape[0]))
    return out, frames


def write_and_score(frames, job: dict, workdir: Path, cuda: bool) -> dict:
    """The runner's calls after a take is generated: mp4 under a partial name, score from the
    written file, the score into the file's tags."""
    from backend.jobs.cluster.task import CancelToken
    from backend.jobs.runner import JobRunner
    from backend.utils.video_io import VideoWriter, copy_with_metadata

    partial, tagged = workdir / "take.partial.mp4", workdir / "take.tagged.mp4"
    began = time.perf_counter()
    with VideoWriter(partial, 30, crf=max(0, 18 - 4), preset="veryfast") as writer:
        writer.write(frames)
    wrote = time.perf_counter()
    score = JobRunner._score(partial, job["first"], job["last"], 30, CancelToken())
    scored = time.perf_counter()
    copy_with_metadata(partial, tagged, {"comment": json.dumps(score.summary())})
    tagged_at = time.perf_counter()
    return {
        "write_s": wrote - began,
        "score_s": scored - wrote,
        "tag_s": tagged_at - scored,
        "write_score_tag_s": tagged_at - began,
        "mp4_bytes": partial.stat().st_size,
        "overall": score.overall,
    }


def decode_once(gen, job: dict, cuda: bool, sections: int) -> dict:
    """One VAE decode of a whole transition's latents (sections × window + 1 latent frames)."""
    import torch

    pipe = gen.pipe
    t = pipe.transformer
    latents = torch.randn(
        1,
        t.config.in_channels,
        sections * job["window"] + 1,
        job["height"] // 8,
        job["width"] // 8,
        device=gen.device,
        dtype=pipe.vae.dtype,
    )
    with torch.no_grad():
        pipe.vae.decode(latents[:, :, :2] / pipe.vae.config.scaling_factor, return_dict=False)  # warm
        began = sync(cuda)
        pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)
        return {"latent_frames": int(latents.shape[2]), "decode_s": sync(cuda) - began}


def lora_figures(gen, job: dict, cuda: bool, workdir: Path, lever_steps: int) -> dict:
    """Switch times and s/step with a LoRA (rank 32 on every double/single block's linears,
    musubi keys, weight 0.05 so random values do not overflow) against none, same process."""
    from backend.pipeline.loras import LoraSwitch
    from tests.helpers.lora_formats import kohya_hunyuan_lora

    folder = workdir / "loras"
    t = gen.pipe.transformer
    for name, seed in (("a", 1), ("b", 2)):
        kohya_hunyuan_lora(t, folder / f"{name}.safetensors", rank=32, seed=seed)
    gen.loras = LoraSwitch(folder, gen.device)
    out: dict = {"rank": 32, "file_mib": (folder / "a.safetensors").stat().st_size / 2**20}

    def per_step(choices) -> dict:
        few, many = 2, max(min(lever_steps, 8), 4)
        a, _ = run_ours(gen, job, cuda, few, 1, workdir, loras=choices)
        switch = gen.loras.switch_seconds
        b, _ = run_ours(gen, job, cuda, many, 1, workdir, loras=choices)
        return {"s_per_step": (b["steps_s"] - a["steps_s"]) / (many - few), "switch_s": switch, "job_s": b["total_s"]}

    out["none_before"] = per_step([])
    out["a_first_use"] = per_step([{"name": "a.safetensors", "weight": 0.05}])  # read + inject (+ recompiles)
    out["a_again"] = per_step([{"name": "a.safetensors", "weight": 0.05}])
    out["b_first_use"] = per_step([{"name": "b.safetensors", "weight": 0.05}])
    out["a_from_b"] = per_step([{"name": "a.safetensors", "weight": 0.05}])  # both loaded: a switch
    out["none_after"] = per_step([])
    base = out["none_before"]["s_per_step"]
    out["lora_over_none_s_per_step"] = out["a_again"]["s_per_step"] / base if base else None
    out["none_after_over_none_before"] = out["none_after"]["s_per_step"] / base if base else None
    return out


def lora_in_plan(pipe, job: dict, cuda: bool, device: str, workdir: Path, args) -> dict:
    """The LoRA figures with the blocks streamed from host RAM (the plan a small GPU gets): the
    same modules placed by the studio's `attach()`, the allocator capped at the simulated GPU."""
    from backend.pipeline.framepack.engine import FramePackEngine
    from benchmarks.framepack_gpu import cap_vram

    settings_args = argparse.Namespace(
        mode=args.lora_plan if cuda else "auto",
        compile="auto",
        offload_weights=args.offload_weights,
        storage_8bit="int8",
        size=job["height"],
    )
    gen = FramePackEngine(studio_settings(settings_args, cuda))
    began = time.perf_counter()
    gen.attach(pipe, device, mode=args.lora_plan if cuda else "cpu")
    out: dict = {"setup_s": time.perf_counter() - began, "plan": gen.plan.describe() if gen.plan else None}
    out["compiled"], out["offload_weights"] = gen.compiled, gen.offload_weights
    if cuda:
        cap_vram(args.vram_limit_gib, out)
        run_ours(gen, job, cuda, 2, 1, workdir)  # the first job after placing: kept apart
    out.update(lora_figures(gen, job, cuda, workdir, args.lever_steps))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models of the same architecture, on the CPU")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--window", type=int, default=9)
    ap.add_argument("--sections", type=int, default=2)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--lever-steps", type=int, default=10, help="steps of the jobs that compare the levers")
    ap.add_argument("--lora", action="store_true", help="also the LoRA switch times and per-step overhead")
    ap.add_argument("--fast", action="store_true", help="also the fast mode's time to the first preview")
    ap.add_argument(
        "--lora-plan", choices=["offload"], default=None, help="only the LoRA figures, under this streamed plan"
    )
    ap.add_argument("--vram-limit-gib", type=float, default=8.0, help="the GPU --lora-plan simulates")
    ap.add_argument(
        "--offload-weights", default="bf16", choices=["bf16", "fp8"], help="--lora-plan's host weights (fp8: 8-bit)"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from backend.pipeline.framepack.engine import FramePackEngine

    cuda = not args.tiny and torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    spec = FULL if cuda else TINY
    size = args.size if cuda else 64
    window = args.window if cuda else 3
    result: dict = {
        "command": "python benchmarks/transition_e2e.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "size": size,
        "window": window,
        "sections": args.sections,
        "steps": args.steps,
    }
    began = time.perf_counter()
    pipe = build_pipeline(spec, device, torch.bfloat16 if cuda else torch.float32)
    pipe.set_progress_bar_config(disable=True)
    result["build_s"] = time.perf_counter() - began
    job = make_job(size, window, args.sections, args.steps)
    workdir = Path(tempfile.mkdtemp(prefix="transition-e2e-"))

    if args.lora_plan:
        result["lora_plan"] = lora_in_plan(pipe, job, cuda, device, workdir, args)
        save(result, args.out)
        print(json.dumps(result, indent=1, default=str))
        return result
    if cuda:  # cuDNN/cuBLAS set-up and the VAE's first shapes: paid before anything is timed
        run_plain(pipe, job, cuda, 2, 1)
    result["plain"] = run_plain(pipe, job, cuda, args.steps, args.sections)
    save(result, args.out)

    gen = FramePackEngine(
        studio_settings(
            argparse.Namespace(
                mode="resident",
                compile="auto",
                offload_weights="auto",
                storage_8bit="int8",
                size=size,
            ),
            cuda,
        )
    )
    began = time.perf_counter()
    gen.attach(pipe, device, mode="resident" if cuda else "cpu")
    result["ours_setup_s"] = time.perf_counter() - began
    result["ours_compiled"] = gen.compiled
    with lever(True, True, gen):
        run_ours(gen, job, cuda, 2, args.sections, workdir)  # first job after loading: kept apart

    # Cumulative: (host mask, overlapped decode, join on the device); the last is the studio's default.
    switches = {
        "before": (False, False, False),
        "no_sync": (True, False, False),
        "overlap": (True, True, False),
        "device_join": (True, True, True),
    }
    levers = tuple(switches)
    outputs = []
    for name, (host_mask, overlap, device_join) in switches.items():
        with lever(host_mask, overlap, gen, device_join):
            result[name], lever_frames = run_ours(gen, job, cuda, args.lever_steps, args.sections, workdir)
        result[name]["steps"] = args.lever_steps
        outputs.append(lever_frames)
        save(result, args.out)
    # The levers are exact: the same job gives the same bytes with each of them.
    result["levers_same_frames"] = all(np.array_equal(outputs[0], other) for other in outputs[1:])
    if args.steps == args.lever_steps:  # the last lever's job is already the studio's default job
        result["ours"], frames = dict(result[levers[-1]]), outputs[-1]
    else:
        with lever(True, True, gen):  # the studio's default, on the whole job
            result["ours"], frames = run_ours(gen, job, cuda, args.steps, args.sections, workdir)
    plain, ours = result["plain"], result["ours"]
    per_step = {n: result[n]["steps_s"] / (result[n]["steps"] * args.sections) for n in levers}
    per_step["ours"] = ours["steps_s"] / (args.steps * args.sections)
    per_step["plain"] = plain["steps_s"] / (args.steps * args.sections)
    result["s_per_step"] = per_step
    result["ratios_ours_vs_plain"] = {
        k: ours[k] / plain[k] for k in ("total_s", "steps_s", "outside_steps_s", "first_section_s") if plain.get(k)
    }
    base = result["before"]
    result["levers_vs_before"] = {
        n: {k: result[n][k] / base[k] for k in ("total_s", "steps_s", "outside_steps_s") if base.get(k)} for n in levers
    }
    save(result, args.out)

    result["take"] = write_and_score(frames, job, workdir, cuda)
    result["take"]["studio_take_s"] = result["ours"]["total_s"] + result["take"]["write_score_tag_s"]
    result["decode_once"] = decode_once(gen, job, cuda, args.sections)
    save(result, args.out)
    if args.fast:
        from backend.jobs.params import DRAFT_CACHE

        with lever(True, True, gen):
            result["fast_first_preview"], _ = run_ours(gen, job, cuda, args.steps, 1, workdir, cache=DRAFT_CACHE)
        save(result, args.out)
    if args.lora:
        with lever(True, True, gen):
            result["lora"] = lora_figures(gen, job, cuda, workdir, args.lever_steps)
        save(result, args.out)
    print(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
