"""OpenCLIP image analysis: embeddings, pair similarity and zero-shot tags.

The model comes from open_clip's own loading (`create_model_from_pretrained`), which covers the
three ways a model can be named in settings:
- a built-in architecture plus a pretrained tag (`ViT-B-32` + `laion2b_s34b_b79k`): downloaded
  once from the Hugging Face hub into `models_dir/open_clip` (the hub client resumes partial
  downloads and checks the file's hash); or plus a path to a checkpoint file;
- `hf-hub:org/repo`: config and weights from a hub repo, cached the same way;
- `local-dir:/path`: a folder with `open_clip_config.json` and the weights, no network at all.
Weights are required: a model that silently fell back to random weights would give confident
nonsense, so loading fails instead and the analysis reports itself unavailable.

torch is imported inside functions so that importing this module (the service does, the web
layer imports the service) does not load torch into the web process's import path.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from backend.utils.config import Settings

# Zero-shot label prompts. Each tag is a softmax over its own prompt group; a label may have
# several phrasings, whose probabilities are summed (prompt ensembling by sum).
PERSON_PROMPTS = {
    True: ["a photo of a person", "a photo of people", "a portrait of a man", "a portrait of a woman"],
    False: [
        "a photo of an empty landscape with nobody in it",
        "a photo of an object",
        "a photo of an animal",
        "a photo of an empty room",
    ],
}
FACE_PROMPTS = {
    True: ["a close-up photo of a human face", "a headshot portrait of a person"],
    False: ["a photo of a person seen from far away", "a photo with no visible faces"],
}
SCENE_PROMPTS = {
    "portrait": ["a portrait photo of a person"],
    "landscape": ["a photo of a natural landscape", "a photo of mountains, sea or forest"],
    "cityscape": ["a photo of a city street", "a photo of buildings in a city"],
    "indoor": ["a photo of an indoor room"],
    "animal": ["a photo of an animal"],
    "object": ["a product photo of an object"],
    "artwork": ["a painting", "an illustration"],
}
STYLE_PROMPTS = {
    "photo": ["a photograph", "a real photo"],
    "illustration": ["an anime illustration", "a cartoon drawing", "a digital painting"],
}
TAG_GROUPS: dict[str, dict[Any, list[str]]] = {
    "person": PERSON_PROMPTS,
    "face": FACE_PROMPTS,
    "scene": SCENE_PROMPTS,
    "style": STYLE_PROMPTS,
}

# Embeddings of uploads kept in memory (uploads never change under their id): the same images are
# analysed when the UI asks for suggestions and again when the job starts.
EMBEDDING_CACHE_SIZE = 512


@dataclass
class ClipBundle:
    model: Any  # open_clip CLIP module, eval mode, on `device`
    preprocess: Any  # PIL image → CHW tensor
    tokenizer: Any  # list[str] → token tensor
    device: str
    name: str  # "ViT-B-32/laion2b_s34b_b79k" — shown in the API answer


def clip_device(settings: Settings) -> str:
    import torch

    if settings.device == "cpu":
        return "cpu"
    if settings.device == "cuda" or torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_openclip(settings: Settings) -> ClipBundle:
    """The real loading path (also the one the tests' local-dir checkpoints go through)."""
    import open_clip

    model_name = settings.openclip_model.strip()
    if not model_name:
        raise RuntimeError("no OpenCLIP model configured (STUDIO_OPENCLIP_MODEL)")
    has_schema = model_name.startswith(("hf-hub:", "local-dir:"))
    pretrained = None if has_schema else (settings.openclip_pretrained.strip() or None)
    if not has_schema and pretrained is None:
        raise RuntimeError(f"OpenCLIP model {model_name} needs pretrained weights (STUDIO_OPENCLIP_PRETRAINED)")
    device = clip_device(settings)
    cache_dir = settings.models_dir / "open_clip"
    cache_dir.mkdir(parents=True, exist_ok=True)
    model, preprocess = open_clip.create_model_from_pretrained(
        model_name,
        pretrained=pretrained,
        precision="fp16" if device == "cuda" else "fp32",
        device=device,
        cache_dir=str(cache_dir),
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name, cache_dir=str(cache_dir))
    label = model_name if pretrained is None else f"{model_name}/{Path(pretrained).name}"
    return ClipBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, device=device, name=label)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


class ImageAnalyzer:
    """Embeds images and tags them. Not thread-safe by itself: the service runs it on one
    worker thread."""

    def __init__(self, bundle: ClipBundle) -> None:
        self.bundle = bundle
        self._embeddings: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._label_cache: dict[str, tuple[list[Any], list[int], np.ndarray]] = {}
        self._lock = threading.Lock()

    # --- embeddings ---------------------------------------------------------------------------
    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) float32, L2-normalised."""
        import torch

        model = self.bundle.model
        dtype = next(model.parameters()).dtype
        batch = torch.stack([self.bundle.preprocess(img.convert("RGB")) for img in images])
        with torch.inference_mode():
            feats = model.encode_image(batch.to(self.bundle.device, dtype=dtype))
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy().astype(np.float32)

    def embed_paths(self, paths: Sequence[Path], loader) -> np.ndarray:
        """Embeddings of stored files, through the in-memory cache; `loader(path) -> PIL`."""
        keys = []
        for p in paths:
            st = Path(p).stat()
            keys.append((str(Path(p).resolve()), st.st_mtime_ns, st.st_size))
        with self._lock:
            missing = [i for i, k in enumerate(keys) if k not in self._embeddings]
        if missing:
            feats = self.embed_images([loader(paths[i]) for i in missing])
            with self._lock:
                for i, f in zip(missing, feats):
                    self._embeddings[keys[i]] = f
                while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
                    self._embeddings.popitem(last=False)
        with self._lock:
            out = []
            for k in keys:
                self._embeddings.move_to_end(k)
                out.append(self._embeddings[k])
        return np.stack(out)

    # --- zero-shot tags -----------------------------------------------------------------------
    def _labels(self, group: str) -> tuple[list[Any], list[int], np.ndarray]:
        """(labels, label index of each prompt, prompt text embeddings), computed once."""
        if group not in self._label_cache:
            import torch

            labels: list[Any] = []
            owner: list[int] = []
            texts: list[str] = []
            for li, (label, prompts) in enumerate(TAG_GROUPS[group].items()):
                labels.append(label)
                for t in prompts:
                    owner.append(li)
                    texts.append(t)
            tokens = self.bundle.tokenizer(texts).to(self.bundle.device)
            with torch.inference_mode():
                feats = self.bundle.model.encode_text(tokens)
                feats = torch.nn.functional.normalize(feats.float(), dim=-1)
            self._label_cache[group] = (labels, owner, feats.cpu().numpy().astype(np.float32))
        return self._label_cache[group]

    def _logit_scale(self) -> float:
        scale = getattr(self.bundle.model, "logit_scale", None)
        if scale is None:
            return 100.0
        return float(math.exp(float(scale.detach().float().cpu().reshape(-1)[0])))

    def label_probs(self, embedding: np.ndarray, group: str) -> dict[Any, float]:
        labels, owner, text = self._labels(group)
        logits = self._logit_scale() * (text @ embedding)
        logits = logits - logits.max()
        p = np.exp(logits)
        p = p / p.sum()
        out = {label: 0.0 for label in labels}
        for pi, li in enumerate(owner):
            out[labels[li]] += float(p[pi])
        return out

    def tags(self, embedding: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
        """(tags, scores) of one image: person/face booleans, scene and style labels."""
        person = self.label_probs(embedding, "person")[True]
        face = self.label_probs(embedding, "face")[True]
        scene = self.label_probs(embedding, "scene")
        style = self.label_probs(embedding, "style")
        tags = {
            "person": person >= 0.5,
            # A face only counts on an image that shows a person at all.
            "face": person >= 0.5 and face >= 0.5,
            "scene": max(scene, key=scene.__getitem__),
            "style": max(style, key=style.__getitem__),
        }
        scores = {
            "person": round(person, 4),
            "face": round(face, 4),
            "scene": {k: round(v, 4) for k, v in scene.items()},
            "style": {k: round(v, 4) for k, v in style.items()},
        }
        return tags, scores


# --- suggestions ------------------------------------------------------------------------------
# CLIP cosine similarity of two real photos rarely leaves [0.45, 0.95]: near-duplicates sit at the
# top, unrelated scenes at the bottom. The pair's "difference" is its place in that range, 0..1.
SIMILAR_AT = 0.95
DIFFERENT_AT = 0.45
SECONDS_RANGE = (2.0, 4.0)  # similar pair → short transition; very different → long
STRENGTH_RANGE = (35, 80)  # very different pairs need more pull toward the end image
RESOLUTION_STEPS = (640, 576, 512, 448, 384, 320)
PAD_ABOVE_LOSS = 0.40  # cropping away more than this of an image loses the subject: pad instead
CROP_BELOW_LOSS = 0.05  # bars thinner than this look like a mistake: crop instead


def pair_difference(similarity: float) -> float:
    d = (SIMILAR_AT - similarity) / (SIMILAR_AT - DIFFERENT_AT)
    return float(min(1.0, max(0.0, d)))


def suggest_pair(similarity: float, max_seconds: float) -> dict[str, Any]:
    d = pair_difference(similarity)
    seconds = SECONDS_RANGE[0] + d * (SECONDS_RANGE[1] - SECONDS_RANGE[0])
    strength = STRENGTH_RANGE[0] + d * (STRENGTH_RANGE[1] - STRENGTH_RANGE[0])
    return {"seconds": round(min(seconds, max_seconds), 1), "strength": int(round(strength))}


def suggest_resolution(sizes: Sequence[tuple[int, int]], default: int = 640) -> int:
    """The largest resolution step whose bucket the smallest image can fill without upscaling."""
    smallest = min(w * h for w, h in sizes)
    for r in RESOLUTION_STEPS:
        if r <= default and r * r <= smallest:
            return r
    return RESOLUTION_STEPS[-1]


def crop_loss(width: int, height: int, bucket: tuple[int, int]) -> float:
    """The share of the image that `crop` cuts off (or of the frame that `pad` leaves empty)."""
    a = width / height
    b = bucket[0] / bucket[1]
    return float(1.0 - min(a, b) / max(a, b))


def suggest_fit(losses: Sequence[float], default: str) -> tuple[str, str | None]:
    worst = max(losses) if losses else 0.0
    if worst > PAD_ABOVE_LOSS:
        return "pad", "pad_large_loss"
    if worst < CROP_BELOW_LOSS:
        return "crop", "crop_same_aspect"
    return default, None
