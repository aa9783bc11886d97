"""CPU tests of the FramePack generator's own loop, memory modes and GPU benchmark.

The tiny pipeline is the real architecture with random weights (tests/helpers/tiny_framepack.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from backend.jobs.params import DRAFT_CACHE
from backend.pipeline.framepack import accel
from backend.pipeline.framepack.engine import FramePackEngine
from backend.pipeline.framepack.loop import _FrameJoiner, encode, latent_paddings, sample_sections
from backend.pipeline.framepack.pinned import pin_module_in_place
from backend.pipeline.framepack.residency import plan_residency
from backend.utils.config import Settings
from backend.utils.progress import JobCancelled, Progress
from tests.helpers.server import ROOT
from tests.helpers.tiny_framepack import build_tiny_pipeline

H, W = 64, 96


@pytest.fixture(scope="module")
def pipe():
    p = build_tiny_pipeline(0)
    p.set_progress_bar_config(disable=True)
    return p


def _images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))


@pytest.mark.parametrize("sections,window,overlap", [(1, 3, False), (6, 2, False), (6, 2, True)])
def test_own_loop_gives_the_pipelines_frames(pipe, sections, window, overlap):
    """Same seed, same job: our streaming loop and diffusers' __call__ give identical frames.

    6 sections exercise the >4-section padding schedule; 1 section the first-is-last case; with
    `overlap_decode` each section is decoded on a background thread while the next one samples.
    """
    a, b = (Image.fromarray(x) for x in _images())
    ref = pipe(
        image=a,
        last_image=b,
        prompt="a cat walks",
        height=H,
        width=W,
        num_frames=sections * ((window - 1) * 4 + 1),
        latent_window_size=window,
        num_inference_steps=2,
        guidance_scale=10.0,
        true_cfg_scale=1.0,
        sampling_type="inverted_anti_drifting",
        generator=torch.Generator("cpu").manual_seed(5),
        output_type="np",
    ).frames[0]
    ref = np.clip(ref * 255.0 + 0.5, 0, 255).astype(np.uint8)
    gen = torch.Generator("cpu").manual_seed(5)
    seen = []
    with torch.no_grad():
        cond = encode(pipe, a, b, "a cat walks", H, W, 1.0, gen, torch.device("cpu"))
        # The pipeline conditions every section on the first image's SigLIP embedding.
        out = _sample(
            pipe,
            cond,
            gen,
            sections=sections,
            window=window,
            on_section=lambda done, frames: seen.append((done, frames.shape[0])),
            overlap=overlap,
        )
    assert out.dtype == np.uint8 and out.shape == ref.shape == (sections * window * 4 + 1, H, W, 3)
    assert np.array_equal(out, ref)
    assert [d for d, _ in seen] == list(range(1, sections + 1))
    assert all(n2 > n1 for (_, n1), (_, n2) in zip(seen, seen[1:]))  # previews grow


def _sample(
    pipe,
    cond,
    gen,
    *,
    sections=3,
    window=2,
    device=torch.device("cpu"),
    on_step=lambda g, i: None,
    on_section=lambda done, frames: None,
    overlap=False,
):
    """The studio's loop on a job like the pipeline's own: every section on the first image's
    SigLIP embedding, 2 steps, distilled guidance 10."""
    return sample_sections(
        pipe,
        cond,
        height=H,
        width=W,
        sections=sections,
        window=window,
        steps=2,
        distilled_guidance=10.0,
        true_cfg=1.0,
        generator=gen,
        device=device,
        image_embeds_for=lambda g: cond.embed_a,
        on_step=on_step,
        on_section=on_section,
        overlap_decode=overlap,
    )


def test_overlapped_decode_stops_with_the_job(pipe):
    """A cancel raised while a section is decoded in the background ends the job with it, and a
    cancel raised by the section callback (on the decoding thread) reaches the sampler; after
    `sample_sections` returns or raises, no section is reported any more."""
    a, b = (Image.fromarray(x) for x in _images())
    gen = torch.Generator("cpu").manual_seed(5)
    with torch.no_grad():
        cond = encode(pipe, a, b, "a cat walks", H, W, 1.0, gen, torch.device("cpu"))

        reported: list[int] = []

        def cancel_in_second_section(g: int, i: int) -> None:
            if g == 1:
                raise JobCancelled()

        with pytest.raises(JobCancelled):
            _sample(
                pipe,
                cond,
                gen,
                on_step=cancel_in_second_section,
                on_section=lambda done, frames: reported.append(done),
                overlap=True,
            )
        after = list(reported)
        assert after in ([], [1])  # the first section's decode may finish; nothing later is reported

        def cancel_on_preview(done: int, frames) -> None:
            raise JobCancelled()

        # Raised at the next section's start or, if the decode was slower than sampling, at the end.
        with pytest.raises(JobCancelled):
            _sample(pipe, cond, gen, sections=4, on_section=cancel_on_preview, overlap=True)
    assert reported == after


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_studio_forward_needs_no_device_sync():  # pragma: no cover - GPU machines only
    """The transformer trims text tokens by the mask's sum and moves frame indices to the GPU; the
    loop keeps that mask on the host and makes the indices on the device, so every forward of a
    real section queues without waiting for the GPU (sync debug mode raises on any wait inside a
    forward). With the mask back on the GPU the same check raises: it is a real check."""
    from backend.pipeline.framepack import loop

    p = build_tiny_pipeline(0).to("cuda")
    p.set_progress_bar_config(disable=True)
    a, b = (Image.fromarray(x) for x in _images())
    device = torch.device("cuda")

    def strict(_module, _args):
        torch.cuda.set_sync_debug_mode("error")

    def relaxed(_module, _args, _out):
        torch.cuda.set_sync_debug_mode("default")

    def run():
        gen = torch.Generator("cpu").manual_seed(5)
        with torch.no_grad():
            cond = encode(p, a, b, "a cat walks", H, W, 1.0, gen, device)
            return _sample(p, cond, gen, sections=2, device=device)

    handles = [p.transformer.register_forward_pre_hook(strict), p.transformer.register_forward_hook(relaxed)]
    try:
        frames = run()
        saved = loop._mask_on_host
        loop._mask_on_host = lambda prompt, device: prompt  # the mask stays on the GPU, as before
        try:
            with pytest.raises(RuntimeError, match="synchroniz"):
                run()
        finally:
            loop._mask_on_host = saved
            torch.cuda.set_sync_debug_mode("default")
    finally:
        for handle in handles:
            handle.remove()
    assert frames.shape[0] == 2 * 2 * 4 + 1


def test_joiner_matches_pipeline_soft_append(pipe):
    rng = np.random.default_rng(1)
    overlap = 5
    sections = [rng.uniform(-1.2, 1.2, (n, 4, 6, 3)).astype(np.float32) for n in (9, 13, 13)]
    joiner = _FrameJoiner(overlap)
    history = None
    for s in sections:  # arrive end-first, each is prepended
        joiner.prepend(torch.from_numpy(s))
        current = torch.from_numpy(s).permute(3, 0, 1, 2)[None]
        history = current if history is None else pipe._soft_append(current, history, overlap)
    ref = (history[0].permute(1, 2, 3, 0).numpy() / 2 + 0.5).clip(0, 1)
    ref = np.clip(ref * 255.0 + 0.5, 0, 255).astype(np.uint8)
    got = joiner.frames()
    assert got.shape == ref.shape == (9 + 13 + 13 - 2 * overlap, 4, 6, 3)
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_latent_paddings():
    assert latent_paddings(1) == [0]
    assert latent_paddings(3) == [2, 1, 0]
    assert latent_paddings(6) == [3, 2, 2, 2, 1, 0]


@pytest.mark.parametrize(
    "requested,device,vram,host,mode",
    [
        ("auto", "cpu", 80, 100, "cpu"),
        ("auto", "cuda", 79, 100, "resident"),
        ("auto", "cuda", 40, 100, "resident"),
        ("auto", "cuda", 22, 100, "partial"),  # bf16 blocks that do not fit stream from RAM: exact
        ("auto", "cuda", 5.5, 100, "offload"),  # no room beside the 640 activations
        ("auto", "cuda", 12, 100, "partial"),
        ("offload", "cuda", 79, 100, "offload"),
        ("fp8", "cuda", 79, 100, "fp8"),
        ("resident", "cuda", 8, 16, "resident"),
    ],
)
def test_memory_mode_choice(requested, device, vram, host, mode):
    """The named modes are corners of the one plan (blocks on GPU / in RAM / on disk)."""
    plan = plan_residency(vram, host, (9, 0), 640, device=device, mode_request=requested)
    assert plan.mode == mode
    assert plan.blocks_gpu + plan.blocks_ram + plan.blocks_disk == 60 or mode == "cpu"


def _generator(pipe) -> FramePackEngine:
    gen = FramePackEngine(Settings(framepack_compile="off"))
    gen.attach(pipe, "cpu", mode="cpu")
    return gen


def test_generate_contract_progress_previews_and_cancel(pipe):
    gen = _generator(pipe)
    first, last = _images(2)
    segment = {"sections": 3, "seed": 7, "end_embed_weights": [0.2, 0.5, 0.8]}
    params = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
    events: list[Progress] = []
    frames = gen.generate(first, last, "a dog runs", segment, params, events.append)
    assert frames.shape == (3 * 2 * 4 + 1, H, W, 3) and frames.dtype == np.uint8
    steps = [e.detail for e in events if "preview_frames" not in e.detail and "step" in e.detail]
    assert [(d["section"], d["step"]) for d in steps] == [(s, i) for s in (1, 2, 3) for i in (1, 2)]
    previews = [e.detail["preview_frames"] for e in events if "preview_frames" in e.detail]
    assert len(previews) == 3 and all(p.dtype == np.uint8 for p in previews)
    assert np.array_equal(previews[-1], frames)
    assert all(0.0 <= e.fraction <= 1.0 for e in events)
    # Same seed, same frames; another strength schedule changes them (embeddings per section apply).
    again = gen.generate(first, last, "a dog runs", segment, params, lambda p: None)
    assert np.array_equal(again, frames)
    other = gen.generate(
        first, last, "a dog runs", {**segment, "end_embed_weights": [0.9, 0.9, 0.9]}, params, lambda p: None
    )
    assert not np.array_equal(other, frames)

    calls = []

    def cancel_at_second_step(p: Progress) -> None:
        calls.append(p.detail)
        if p.detail.get("step") == 2 and "preview_frames" not in p.detail:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        gen.generate(first, last, "a dog runs", segment, params, cancel_at_second_step)
    assert calls[-1] == {"section": 1, "sections": 3, "step": 2, "steps": 2}


def test_fast_mode_cache_runs_and_is_removed_after(pipe):
    gen = _generator(pipe)
    first, last = _images(3)
    segment = {"sections": 2, "seed": 1, "end_embed_weights": [0.5, 0.5]}
    params = {
        "steps": 3,
        "latent_window_size": 2,
        "distilled_guidance": 10.0,
        "true_cfg": 1.0,
        "cache": DRAFT_CACHE,
    }
    frames = gen.generate(first, last, "", segment, params, lambda p: None)
    assert frames.shape == (17, H, W, 3)
    assert type(pipe.transformer.transformer_blocks) is torch.nn.ModuleList


def test_eager_blocks_restores_compiled_blocks(pipe):
    blocks = accel.blocks(pipe.transformer)
    for block in blocks:
        block.compile(dynamic=True)  # lazy: nothing is compiled until a call
    try:
        compiled = [b._compiled_call_impl for b in blocks]
        assert all(c is not None for c in compiled)
        with accel.eager_blocks(pipe.transformer):
            assert all(b._compiled_call_impl is None for b in blocks)
        assert [b._compiled_call_impl for b in blocks] == compiled
    finally:
        for block in blocks:
            block._compiled_call_impl = None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locking needs CUDA")
def test_pin_in_place_keeps_values_and_pins():  # pragma: no cover - GPU machines only
    module = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.LayerNorm(128))
    before = [p.detach().clone() for p in module.parameters()]
    total = pin_module_in_place(module)
    assert total >= sum(p.numel() * p.element_size() for p in module.parameters())
    for p, ref in zip(module.parameters(), before):
        assert p.is_pinned() and torch.equal(p, ref)


def test_transition_benchmark_runs_tiny_on_cpu(tmp_path):
    """benchmarks/transition_e2e.py (issue 28's end-to-end figures) keeps working: every lever
    gives the same frames, the parts add up, the take is written and scored."""
    from benchmarks.transition_e2e import main

    result = main(["--tiny", "--steps", "2", "--lever-steps", "2", "--out", str(tmp_path / "e2e.json")])
    assert result["levers_same_frames"] is True
    for name in ("plain", "before", "no_sync", "overlap", "ours"):
        part = result[name]
        assert part["total_s"] > 0 and len(part["section_steps_s"]) == 2
        assert part["outside_steps_s"] == pytest.approx(part["total_s"] - part["steps_s"])
    assert len(result["ours"]["decodes_s"]) == 2 and result["ours"]["host_preview_write_s"] > 0
    assert result["take"]["mp4_bytes"] > 0 and result["take"]["overall"] is not None
    assert json.loads((tmp_path / "e2e.json").read_text())["decode_once"]["latent_frames"] == 2 * 3 + 1


def test_gpu_benchmark_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/framepack_gpu.py",
            "--tiny",
            "--reference",
            "--sections",
            "2",
            "--steps",
            "2",
            "--growth-sections",
            "2",
            "--magcache",
            "--no-sync",
            "--attention",
            "--storage-error",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["models"] == "tiny" and result["flops_per_forward"] > 0 and result["tokens_per_forward"] > 0
    for key in ("reference", "ours"):
        assert result[key]["s_per_step"] > 0 and len(result[key]["s_per_section_measured"]) == 2
        assert result[key]["first_section_s"] > 0 and result[key]["peak_rss_gib"] > 0
    assert result["ours"]["frames"] == 2 * 3 * 4 + 1
    assert result["ratios_ours_over_reference"]["s_per_step"] > 0
    assert result["vram_growth"]["frames"] == [13, 25]
    fast = result["magcache"]["8"]  # the fast mode's grid, at the slider's lowest step count
    assert fast["off"]["skipped_per_section"] == [0]
    assert fast[DRAFT_CACHE]["skipped_per_section"] == [2] and fast[DRAFT_CACHE]["pattern"] == ".....s.s"
    assert all(row["s_per_section"][0] > 0 for row in fast.values())
    assert 0 < fast[DRAFT_CACHE]["rel_l2_vs_full"] < 0.5
    # The tiny model's steps take milliseconds: only the shape of these figures is checked on the CPU.
    assert all(t > 0 for t in result["no_sync"]["section_s"]) and "s_per_step" in result["no_sync"]
    assert result["attention_kernels"]["job"]["math"]["s_per_call"] > 0
    storage = result["storage_8bit_error"]
    assert storage["converted_linears"] > 10
    assert 0 < storage["int8"]["rel_l2_error_vs_bf16"] < storage["fp8"]["rel_l2_error_vs_bf16"] < 0.2
    assert result["ours"]["text_encode_s"] > 0


def test_true_cfg_runs_a_negative_forward_per_step(pipe):
    gen = _generator(pipe)
    first, last = _images(4)
    forwards = {"n": 0}
    handle = pipe.transformer.register_forward_pre_hook(lambda *_: forwards.__setitem__("n", forwards["n"] + 1))
    try:
        segment = {"sections": 1, "seed": 3, "end_embed_weights": [0.5]}
        base = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "cache": "off"}
        plain = gen.generate(first, last, "a cat", segment, {**base, "true_cfg": 1.0}, lambda p: None)
        assert forwards["n"] == 2
        forwards["n"] = 0
        guided = gen.generate(first, last, "a cat", segment, {**base, "true_cfg": 3.0}, lambda p: None)
        assert forwards["n"] == 4  # cond + uncond (empty negative prompt) per step
        assert guided.shape == plain.shape and not np.array_equal(guided, plain)
    finally:
        handle.remove()


def test_gpu_benchmark_loads_from_disk_tiny_on_cpu(tmp_path):
    """--from-disk saves the models (child process) and measures the studio's own load() path."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/framepack_gpu.py",
            "--tiny",
            "--from-disk",
            str(tmp_path / "saved"),
            "--sections",
            "1",
            "--steps",
            "2",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (tmp_path / "saved" / "model_index.json").exists() and result["save_s"] > 0
    assert result["ours_load_s"] > 0 and result["ours_load_peak_rss_gib"] > 0
    assert result["ours"]["frames"] == 3 * 4 + 1 and result["ours"]["s_per_step"] > 0
