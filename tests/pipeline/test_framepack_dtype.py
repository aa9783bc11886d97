"""CPU tests of the compute dtype per GPU and of the overflow guard.

fp16 with an fp32 residual stream runs on the CPU too (autocast has an fp16 CPU path), so the
T4's arithmetic is exercised here on the tiny real-architecture pipeline; the overflow is injected
into a block's output while fp16 autocast is on, as an fp16 overflow would show.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from backend.pipeline.framepack.compute_dtype import ComputePolicy, UpcastWeights, keep_stream_fp32
from backend.pipeline.framepack.engine import FramePackEngine
from backend.pipeline.framepack.loading import check_no_bf16, storage_dtype
from backend.pipeline.framepack.loop import encode, sample_sections
from backend.pipeline.framepack.residency import plan_residency
from backend.utils.config import Settings
from backend.utils.progress import Progress
from tests.helpers.tiny_framepack import build_tiny_pipeline

H, W = 64, 96


def _images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)) for _ in range(2)]


def _inject_overflow(pipe) -> dict:
    """Block 0 returns inf whenever fp16 autocast is on (what an fp16 overflow looks like)."""
    fired = {"n": 0}

    def hook(module, args, out):
        if torch.is_autocast_enabled("cpu"):
            fired["n"] += 1
            return tuple(o * float("inf") for o in out)
        return None

    pipe.transformer.transformer_blocks[0].register_forward_hook(hook)
    return fired


def _sample(pipe, policy, warnings=None, sections=2):
    a, b = _images()
    gen = torch.Generator("cpu").manual_seed(5)
    with torch.no_grad():
        cond = encode(pipe, a, b, "a cat walks", H, W, 1.0, gen, torch.device("cpu"))
        return sample_sections(
            pipe,
            cond,
            height=H,
            width=W,
            sections=sections,
            window=2,
            steps=2,
            distilled_guidance=10.0,
            true_cfg=1.0,
            generator=gen,
            device=torch.device("cpu"),
            image_embeds_for=lambda g: cond.embed_a,
            on_step=lambda g, i: None,
            on_section=lambda d, f: None,
            policy=policy,
            on_warning=None if warnings is None else warnings.append,
        )


def _fp16_pipe():
    pipe = build_tiny_pipeline(0).to(torch.float16)
    keep_stream_fp32(pipe.transformer)
    return pipe


@pytest.fixture(scope="module")
def fp32_frames():
    return _sample(build_tiny_pipeline(0), ComputePolicy("fp32", "cpu"))


@pytest.mark.slow
def test_fp16_with_fp32_stream_is_close_to_fp32(fp32_frames):
    pipe = _fp16_pipe()
    seen = []
    pipe.transformer.transformer_blocks[0].register_forward_hook(lambda m, a, out: seen.append(out[0].dtype))
    frames = _sample(pipe, ComputePolicy("fp16", "cpu"))
    diff = np.abs(frames.astype(int) - fp32_frames.astype(int))
    assert seen and all(d == torch.float32 for d in seen)  # the residual stream stays fp32
    assert diff.mean() < 0.5 and diff.max() <= 8, (diff.mean(), diff.max())


@pytest.mark.slow
def test_fp32_policy_runs_fp16_weights_in_fp32(fp32_frames):
    """The safe fallback keeps fp16 weights and casts each up as its op runs."""
    pipe = build_tiny_pipeline(0).to(torch.float16)
    frames = _sample(pipe, ComputePolicy("fp32", "cpu"))
    assert all(p.dtype == torch.float16 for p in pipe.transformer.parameters())
    assert np.abs(frames.astype(int) - fp32_frames.astype(int)).mean() < 0.5


def test_upcast_weights_mode_casts_mixed_ops_only():
    x = torch.randn(3, 8)
    w = torch.randn(4, 8).half()
    with UpcastWeights():
        out = torch.nn.functional.linear(x, w)
    assert out.dtype == torch.float32 and torch.allclose(out, x @ w.float().t())
    with pytest.raises(RuntimeError):
        torch.nn.functional.linear(x, w)  # without the mode the dtypes clash


@pytest.mark.slow
def test_overflow_guard_reruns_the_section_in_fp32_with_a_warning():
    warnings: list[str] = []
    pipe = _fp16_pipe()
    fired = _inject_overflow(pipe)
    frames = _sample(pipe, ComputePolicy("fp16", "cpu"), warnings)
    # The same sections computed in fp32 from the start: the guard's result is exactly that.
    clean = _fp16_pipe()
    want = _sample(clean, ComputePolicy("fp32", "cpu"))
    assert fired["n"] >= 1
    assert len(warnings) == 1 and "fp16" in warnings[0] and "fp32" in warnings[0]
    assert "구간" in warnings[0]  # Korean and English, as the page shows it
    assert np.array_equal(frames, want)
    assert frames.std() > 1  # not a black video


def test_overflow_that_persists_stops_the_job():
    pipe = build_tiny_pipeline(0)

    def always_inf(module, args, out):
        return tuple(o * float("inf") for o in out)

    pipe.transformer.transformer_blocks[0].register_forward_hook(always_inf)
    warnings: list[str] = []
    with pytest.raises(FloatingPointError, match="inf/NaN"):
        _sample(pipe, ComputePolicy("bf16", "cpu"), warnings)  # bf16 -> fp32 re-run -> still inf
    assert len(warnings) == 1


def test_generator_reports_the_overflow_as_a_job_warning(tmp_path):
    pipe = _fp16_pipe()
    _inject_overflow(pipe)
    gen = FramePackEngine(Settings(framepack_compile="off", models_dir=tmp_path))
    gen.attach(pipe, "cpu", mode="cpu")
    gen.policy = ComputePolicy("fp16", "cpu")  # the T4's policy, on the CPU
    reports: list[Progress] = []
    a, b = (np.asarray(im) for im in _images())
    segment = {"sections": 1, "seed": 3, "end_embed_weights": [0.5]}
    params = {"steps": 2, "latent_window_size": 2, "distilled_guidance": 10.0, "true_cfg": 1.0, "cache": "off"}
    frames = gen.generate(a, b, "a cat", segment, params, reports.append)
    warned = [r for r in reports if "warning" in r.detail]
    assert len(warned) == 1 and np.isfinite(frames.astype(float)).all()


def test_turing_plan_reads_fp16_weights_and_refuses_bf16_ones():
    t4 = plan_residency(15, 11.8, (7, 5), 480)
    assert t4.dtype == "fp16" and storage_dtype("cuda", t4) == torch.float16
    assert storage_dtype("cuda", plan_residency(15, 11.8, (7, 5), 480, dtype_request="fp32")) == torch.float16
    assert storage_dtype("cuda", plan_residency(24, 64, (8, 9), 640)) == torch.bfloat16
    pipe = build_tiny_pipeline(0).to(torch.float16)
    check_no_bf16(pipe, t4)  # nothing in bf16: fine
    pipe.vae.to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="bf16 weights remain"):
        check_no_bf16(pipe, t4)


def test_job_runner_turns_the_warning_into_a_job_warning_event(tmp_path):
    """The generator's warning reaches the job (stored, shown after a reload) and the page (event)."""
    from backend.jobs.runner import CancelToken, JobRunner
    from backend.jobs.store import Store

    store = Store(tmp_path / "studio.sqlite3")
    store.create_job("j1", "framepack", {"images": []}, {"segments": []}, [], 1)
    events: list[dict] = []
    runner = JobRunner(
        Settings(data_dir=tmp_path),
        store,
        engines=None,
        publish=lambda event: events.append(event.model_dump(exclude={"ts"})),
    )
    report = runner.reporter("j1", CancelToken(), 0.0, {"generate": 1.0, "join": 0.0, "postprocess": 0.0}, [1.0])
    message = "구간 1/2: ... / section 1/2: the latents overflowed (inf/NaN) in fp16; re-running it in fp32 (slower)."
    report(Progress("generate", 0.0, message, {"warning": message}))
    assert events == [{"type": "job.warning", "job_id": "j1", "message": message}]
    assert store.get_job("j1")["warnings"] == [message]
