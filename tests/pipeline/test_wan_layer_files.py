"""Wan's disk placement reads the transformer from its checkpoint straight into diffusers' layer
files (`pipeline/wan/layer_files.py`), so a machine with less RAM than the transformer can load it.

Tiny random models of the real architecture, saved in diffusers layout: the files hold what
diffusers' own `from_pretrained` + `enable_group_offload(offload_to_disk_path=…)` writes, tensor for
tensor (fp32 and the bf16 a GPU loads, with the float32 modules diffusers keeps); the transformer is
never materialised; the frames equal the plain pipeline's, Wan 2.1 and both Wan 2.2 experts.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.pipeline.wan.wan_engine import WanEngine
from backend.utils.config import Settings
from backend.utils.model_registry import WAN21, WAN22
from tests.helpers.tiny_wan import save_tiny_pipeline, save_tiny_wan22_pipeline
from tests.pipeline import test_wan22_engine, test_wan_engine
from tests.pipeline.test_wan_engine import images, plain  # noqa: F401  (fixture)

MODELS = {"wan21": (WAN21, save_tiny_pipeline), "wan22": (WAN22, save_tiny_wan22_pipeline)}
JOBS = {"wan21": test_wan_engine.job, "wan22": test_wan22_engine.job}  # each model's own parameters


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan-layer-files")
    return {key: save(root / model.folder) for key, (model, save) in MODELS.items()}


def _tensors(folder):
    from safetensors.torch import load_file

    return {p.name: load_file(str(p)) for p in sorted(folder.glob("group_*.safetensors"))}


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
def test_the_layer_files_hold_what_diffusers_writes_from_the_loaded_model(saved, dtype_name, tmp_path):
    import torch
    from diffusers import WanTransformer3DModel

    from backend.pipeline.framepack.weight_storage import SafetensorsReader, safetensors_files
    from backend.pipeline.wan import layer_files
    from backend.pipeline.wan.wan_loading import place

    dtype = getattr(torch, dtype_name)
    folder = saved["wan21"]

    class Pipe:  # place() walks `components`; only the transformer matters here
        def __init__(self, transformer):
            self.components = {"transformer": transformer}
            self.vae = type("Vae", (), {"enable_tiling": lambda self: None})()

    loaded = WanTransformer3DModel.from_pretrained(str(folder), subfolder="transformer", dtype=dtype)
    want_dtypes = {n: t.dtype for n, t in list(loaded.named_parameters()) + list(loaded.named_buffers())}
    place(Pipe(loaded), "cpu", "group_offload_disk", tmp_path / "diffusers")

    empty = layer_files.empty_transformer(folder, "transformer", dtype)
    assert all(p.is_meta for p in empty.parameters())  # nothing read yet
    got_dtypes = {n: t.dtype for n, t in list(empty.named_parameters()) + list(empty.named_buffers())}
    assert got_dtypes == want_dtypes  # float32 where diffusers keeps it (norms, time embedder, RoPE)
    reader = SafetensorsReader(safetensors_files(str(folder), "transformer"))
    place(Pipe(empty), "cpu", "group_offload_disk", tmp_path / "studio", {"transformer": (reader, dtype)})

    want, got = _tensors(tmp_path / "diffusers" / "transformer"), _tensors(tmp_path / "studio" / "transformer")
    assert set(got) == set(want) and len(got) > 10  # the same groups, no placeholder left
    for name, tensors in want.items():
        assert set(got[name]) == set(tensors), name
        for key, value in tensors.items():
            assert got[name][key].dtype == value.dtype and torch.equal(got[name][key], value), (name, key)


def test_a_checkpoint_missing_a_weight_is_refused_by_name(saved, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from backend.pipeline.framepack.weight_storage import SafetensorsReader
    from backend.pipeline.wan import layer_files
    from backend.pipeline.wan.wan_loading import place

    folder = saved["wan21"]
    (file,) = sorted((folder / "transformer").glob("*.safetensors"))
    state = load_file(str(file))
    state.pop("blocks.0.ffn.net.0.proj.weight")
    save_file(state, str(tmp_path / "cut.safetensors"))
    empty = layer_files.empty_transformer(folder, "transformer", torch.float32)
    pipe = type("Pipe", (), {})()
    pipe.components = {"transformer": empty}
    pipe.vae = type("Vae", (), {"enable_tiling": lambda self: None})()
    reader = SafetensorsReader([tmp_path / "cut.safetensors"])
    with pytest.raises(ValueError, match=r"blocks\.0\.ffn\.net\.0\.proj\.weight"):
        place(pipe, "cpu", "group_offload_disk", tmp_path / "scratch", {"transformer": (reader, torch.float32)})


@pytest.mark.parametrize("key", sorted(MODELS))
def test_read_for_the_disk_placement_then_generate_gives_the_plain_pipeline_frames(saved, key, images, tmp_path):  # noqa: F811
    from diffusers import WanImageToVideoPipeline

    from backend.pipeline.wan.wan_loading import read

    model, _ = MODELS[key]
    folder = saved[key]
    pipe, checkpoints = read(folder, model.components, "cpu", "group_offload_disk")
    transformers = [c for c in model.components if c.startswith("transformer")]
    assert sorted(checkpoints) == transformers
    assert all(p.is_meta for name in transformers for p in getattr(pipe, name).parameters())
    gen = WanEngine(Settings(models_dir=tmp_path / "models", device="cpu", wan_model=model.key))
    gen.attach(pipe, "cpu", "group_offload_disk", "test", checkpoints)
    for name in transformers:
        assert len(list((gen.scratch_dir() / name).glob("group_*.safetensors"))) > 10

    first, last = images
    p = JOBS[key](quality=30)
    p["steps"] = 2  # Wan 2.2: one step on each expert
    seg = p["segments"][0]
    frames = gen.generate(first, last, "a cat walks", seg, p, lambda _p: None)
    reference = WanImageToVideoPipeline.from_pretrained(str(folder))
    reference.set_progress_bar_config(disable=True)
    expected = plain(reference, first, last, "a cat walks", seg["frames"], 2, model.guidance, seg["seed"])
    np.testing.assert_array_equal(frames, expected)
