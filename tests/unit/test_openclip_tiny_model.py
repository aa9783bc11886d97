"""A tiny random OpenCLIP model of the real architecture, saved as a local checkpoint folder and
loaded back through the studio's real loading path (`load_openclip`) (the model is built by
`tests/helpers/openclip.py`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.jobs.analyzers.image_analyzer import ImageAnalyzer, cosine, load_openclip
from tests.helpers.openclip import clip_settings, pattern_image, tiny_clip_dir


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    return load_openclip(clip_settings(root, tiny_clip_dir(root)))


def test_tiny_checkpoint_loads_through_real_path_with_saved_weights(tmp_path, tiny_bundle):
    import torch
    from safetensors.torch import load_file

    folder = Path(tiny_bundle.name.removeprefix("local-dir:"))
    saved = load_file(str(folder / "open_clip_model.safetensors"))
    loaded = tiny_bundle.model.state_dict()
    # The weights in the model are the saved ones, not a fresh random init.
    for key in ("visual.conv1.weight", "token_embedding.weight", "text_projection"):
        assert torch.equal(loaded[key].cpu(), saved[key])
    assert tiny_bundle.device == "cpu"
    assert not tiny_bundle.model.training


def test_embeddings_are_deterministic_and_self_similarity_is_one(tiny_bundle):
    analyzer = ImageAnalyzer(tiny_bundle)
    a, b = pattern_image("gradient"), pattern_image("checker")
    e1 = analyzer.embed_images([a, b])
    e2 = analyzer.embed_images([a, b])
    assert e1.shape == (2, 32)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    assert cosine(e1[0], e2[0]) == pytest.approx(1.0, abs=1e-6)
    assert cosine(e1[0], e1[1]) < 0.9999


def test_tags_are_probabilities_with_known_labels(tiny_bundle):
    analyzer = ImageAnalyzer(tiny_bundle)
    emb = analyzer.embed_images([pattern_image("red")])[0]
    tags, scores = analyzer.tags(emb)
    assert set(tags) == {"person", "face", "scene", "style"}
    assert isinstance(tags["person"], bool) and isinstance(tags["face"], bool)
    assert tags["scene"] in scores["scene"] and tags["style"] in scores["style"]
    assert sum(scores["scene"].values()) == pytest.approx(1.0, abs=1e-3)
    assert 0.0 <= scores["person"] <= 1.0
    # A face never counts without a person.
    assert not (tags["face"] and not tags["person"])


def test_a_folder_without_weights_is_refused_not_randomly_initialised(tmp_path):
    folder = tiny_clip_dir(tmp_path)
    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(RuntimeError):
        load_openclip(clip_settings(tmp_path, folder))


def test_unknown_pretrained_fails_fast_without_network(tmp_path):
    settings = clip_settings(tmp_path, None, openclip_pretrained=str(tmp_path / "missing.bin"))
    with pytest.raises(RuntimeError):
        load_openclip(settings)
