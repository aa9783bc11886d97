"""The post-processing weight files: where each comes from, how to check it, where it lives.

`ensure_weight(name, settings, progress)` returns the local path of a weight file, downloading
it on first use into the folder its setting names. With no network (or no public direct URL)
the error names the file, where to get it and the exact path to put it at; it never waits
longer than the download timeout.

Checksums: only values read from public sources are filled in. Where a field is `None` it is
unknown here; `download_file` then checks only the size when that is known. A file whose hash is
not pinned is checked by its `verifier` when it has one (RIFE: the checkpoint must load into the
network its keys name), and its sha256 and size are then recorded next to it
(`.studio-checksums.json`): a later download of the same file must match that first verified one,
and a file on disk whose size changed is fetched again. No hash is guessed.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.contracts import messages
from backend.contracts.errors import StudioError, as_param
from backend.utils.downloads import DownloadError, DownloadProgress, download_file, sha256_of
from backend.utils.progress import Progress, ProgressCallback

CHECKSUMS_FILE = ".studio-checksums.json"


@dataclass(frozen=True)
class WeightFile:
    name: str
    filename: str  # relative to the folder of `dir_setting`
    url: str | None  # None: no stable direct URL; the user places the file by hand
    sha256: str | None
    size: int | None
    licence: str
    dir_setting: str  # the Settings field holding the folder
    env: str  # the environment variable of that setting, for messages
    source_note: str  # where a person gets the file when the download cannot happen
    # "module:function" that raises when a downloaded file is not what it should be (imported
    # only when a file arrives, so this module stays free of torch).
    verifier: str | None = None


WEIGHTS: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            name="realesrgan-x4plus",
            filename="RealESRGAN_x4plus.pth",
            url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
            # Published alongside the release file by several public download manifests.
            sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
            size=67_040_989,
            licence="BSD-3-Clause (Real-ESRGAN)",
            dir_setting="upscaler_dir",
            env="UPSCALER_DIR",
            source_note="Real-ESRGAN release v0.1.0 on GitHub",
        ),
        WeightFile(
            name="realesrgan-x2plus",
            filename="RealESRGAN_x2plus.pth",
            url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
            sha256=None,  # unknown here
            size=None,  # unknown here
            licence="BSD-3-Clause (Real-ESRGAN)",
            dir_setting="upscaler_dir",
            env="UPSCALER_DIR",
            source_note="Real-ESRGAN release v0.2.1 on GitHub",
        ),
        WeightFile(
            name="realesr-animevideov3",
            filename="realesr-animevideov3.pth",
            url="https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-animevideov3.pth",
            sha256=None,  # unknown here
            size=None,
            licence="BSD-3-Clause (Real-ESRGAN)",
            dir_setting="upscaler_dir",
            env="UPSCALER_DIR",
            source_note="Real-ESRGAN release v0.2.5.0 on GitHub",
        ),
        WeightFile(
            name="codeformer",
            filename="codeformer.pth",
            url="https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",
            sha256=None,  # unknown here
            size=None,
            licence="S-Lab License 1.0 (CodeFormer): non-commercial use only",
            dir_setting="codeformer_dir",
            env="CODEFORMER_DIR",
            source_note="CodeFormer release v0.1.0 on GitHub",
        ),
        WeightFile(
            name="retinaface-resnet50",
            filename="detection_Resnet50_Final.pth",
            url="https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
            sha256=None,  # unknown here
            size=None,
            licence="MIT (facexlib / Pytorch_Retinaface)",
            dir_setting="facexlib_dir",
            env="FACEXLIB_DIR",
            source_note="facexlib release v0.1.0 on GitHub",
        ),
        # Practical-RIFE's own releases are Google Drive archives; vs-rife re-publishes the same
        # `module.`-prefixed state dicts as direct files on its GitHub release `model`.
        WeightFile(
            name="rife-4.25",
            filename="rife-4.25/flownet.pkl",
            url="https://github.com/HolyWu/vs-rife/releases/download/model/flownet_v4.25.pkl",
            sha256=None,  # unknown here: recorded on the first verified download
            size=None,
            licence="MIT (Practical-RIFE)",
            dir_setting="rife_dir",
            env="RIFE_DIR",
            source_note="vs-rife's GitHub release 'model' (flownet_v4.25.pkl), or the 4.25 archive of the Practical-RIFE README (train_log/flownet.pkl)",
            verifier="backend.pipeline.rife_ifnet:verify_checkpoint",
        ),
        WeightFile(
            name="rife-4.26",
            filename="rife-4.26/flownet.pkl",
            url="https://github.com/HolyWu/vs-rife/releases/download/model/flownet_v4.26.pkl",
            sha256=None,  # unknown here: recorded on the first verified download
            size=None,
            licence="MIT (Practical-RIFE)",
            dir_setting="rife_dir",
            env="RIFE_DIR",
            source_note="vs-rife's GitHub release 'model' (flownet_v4.26.pkl), or the 4.26 archive of the Practical-RIFE README (train_log/flownet.pkl)",
            verifier="backend.pipeline.rife_ifnet:verify_checkpoint",
        ),
    )
}

# The upscale models a job may name: every Real-ESRGAN file above, the first one the default.
UPSCALE_MODELS: tuple[str, ...] = tuple(w.name for w in WEIGHTS.values() if w.dir_setting == "upscaler_dir")
DEFAULT_UPSCALE_MODEL = UPSCALE_MODELS[0]


class MissingWeightError(StudioError, RuntimeError):
    """A weight file is absent and could not be fetched; the message names it and where to put it."""


def weight_path(name: str, settings) -> Path:
    spec = _spec(name)
    return Path(getattr(settings, spec.dir_setting)) / spec.filename


def _spec(name: str) -> WeightFile:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise KeyError(f"unknown weight file {name!r}; known: {', '.join(sorted(WEIGHTS))}") from None


def _checksums_path(path: Path, spec: WeightFile) -> Path:
    # One record per weight folder, next to the files it describes.
    root = path
    for _ in Path(spec.filename).parts:
        root = root.parent
    return root / CHECKSUMS_FILE


def recorded_checksum(spec: WeightFile, path: Path) -> dict | None:
    """The sha256/size recorded at the first verified download of `spec` into `path`'s folder."""
    try:
        return json.loads(_checksums_path(path, spec).read_text(encoding="utf-8")).get(spec.filename)
    except (OSError, ValueError, AttributeError):
        return None


def _record_checksum(spec: WeightFile, path: Path, url: str) -> None:
    book = _checksums_path(path, spec)
    try:
        data = json.loads(book.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data[spec.filename] = {"sha256": sha256_of(path), "size": path.stat().st_size, "url": url}
    tmp = book.with_name(book.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, book)


def expected_checksum(spec: WeightFile, path: Path) -> tuple[str | None, int | None]:
    """(sha256, size) a file must have: the published ones, else the recorded ones."""
    if spec.sha256 or spec.size:
        return spec.sha256, spec.size
    seen = recorded_checksum(spec, path)
    return (seen.get("sha256"), seen.get("size")) if seen else (None, None)


def verify_and_record(spec: WeightFile, path: Path, url: str) -> None:
    """After a download: runs the spec's verifier (the file is deleted when it fails) and, for a
    file with no published hash, records the one it arrived with."""
    if spec.verifier:
        module, function = spec.verifier.split(":")
        try:
            getattr(importlib.import_module(module), function)(path)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise MissingWeightError(
                "weight_unusable",
                filename=spec.filename,
                name=spec.name,
                url=url,
                error=as_param(exc),
                source=spec.source_note,
                path=str(path),
            ) from exc
    if not spec.sha256 and recorded_checksum(spec, path) is None:
        _record_checksum(spec, path, url)


def ensure_weight(
    name: str,
    settings,
    progress: ProgressCallback | None = None,
    stage: str = "download",
    url: str | None = None,
) -> Path:
    """The local path of weight `name`, downloading it first when it is not there.

    `url` overrides the registry's (a mirror). Progress goes out as `Progress(stage, fraction,
    detail={"download": name, "bytes", "total"})`.
    """
    spec = _spec(name)
    path = weight_path(name, settings)
    sha256, size = expected_checksum(spec, path)
    if path.exists() and (size is None or path.stat().st_size == size):
        return path
    mirror = str(getattr(settings, "weights_mirror", "") or "").rstrip("/")
    source = url or (f"{mirror}/{spec.url.rsplit('/', 1)[-1]}" if mirror and spec.url else spec.url)
    facts: dict[str, Any] = {
        "filename": spec.filename,
        "name": name,
        "source": spec.source_note,
        "path": str(path),
        "env": spec.env,
    }
    if source is None:
        raise MissingWeightError("weight_missing", **facts)

    def report(p: DownloadProgress) -> None:
        if progress is not None:
            progress(
                Progress(
                    stage=stage,
                    fraction=p.fraction if p.fraction is not None else 0.0,
                    message=f"Downloading {spec.filename}",
                    detail={"download": name, "bytes": p.done, "total": p.total},
                )
            )

    timeout = float(getattr(settings, "weights_download_timeout_s", 30.0))
    retry_s = float(getattr(settings, "unreachable_retry_s", 120.0))
    try:
        download_file(source, path, sha256, size, progress=report, timeout=timeout, unreachable_retry_s=retry_s)
    except DownloadError as exc:
        raise MissingWeightError("weight_download_failed", error=as_param(exc), url=source, **facts) from exc
    verify_and_record(spec, path, source)
    return path


# ------------------------------------------------------------------------------------------------
# FramePack: installed or not (what /api/health and the submit check report)

# Components whose folder must hold a weight file for the pipeline to load.
_WEIGHT_COMPONENTS = ("transformer", "transformer_2", "text_encoder", "text_encoder_2", "vae", "image_encoder")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class InstallProblem:
    """Why an engine cannot run here, in both languages, and the command that fixes it."""

    missing: str  # the model, as a person names it
    code: str  # the sentence in backend.contracts.messages
    params: dict
    fix: str

    @property
    def en(self) -> str:
        return messages.render(self.code, "en", self.params)

    @property
    def ko(self) -> str:
        return messages.render(self.code, "ko", self.params)

    @property
    def message(self) -> str:
        return messages.bilingual(self.code, self.params)


def setup_fix_command(settings, group: str) -> str:
    # Inside the checkout the folder is given relative to it (the README's `./models`): a command
    # that can be pasted as it is, and no server path on the open health route.
    root = Path(__file__).resolve().parents[2]
    try:
        base = "./" + Path(settings.models_dir).resolve().relative_to(root).as_posix()
    except ValueError:
        base = str(settings.models_dir)
    return f"bash scripts/setup.sh --base-dir {base} --only {group}"


def framepack_fix_command(settings) -> str:
    return setup_fix_command(settings, "framepack")


def _has_weights(folder: Path) -> bool:
    try:
        return any(p.suffix in _WEIGHT_SUFFIXES and p.exists() for p in folder.iterdir())
    except OSError:
        return False


def _folder_problem(path: Path) -> str | None:
    """What is missing from a FramePack folder in diffusers layout, or None when it is complete."""
    import json

    index = path / "model_index.json"
    if not path.is_dir():
        return f"{path} does not exist"
    try:
        # Components are `[library, class]` pairs; a pipeline's config values (Wan's
        # `boundary_ratio`) and absent optional parts (`[null, null]`) are not folders.
        components = [
            k
            for k, v in json.loads(index.read_text(encoding="utf-8")).items()
            if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[1]
        ]
    except (OSError, ValueError):
        return f"{path} has no readable model_index.json"
    for name in components:
        folder = path / name
        if not folder.is_dir():
            return f"{folder} is missing"
        if name in _WEIGHT_COMPONENTS and not _has_weights(folder):
            return f"{folder} holds no weight file (a download that did not finish?)"
    return None


def _hub_cached(repo: str, filename: str, cache_dir: str | None = None) -> bool:
    """True when the Hugging Face cache holds `filename` of `repo` and weight files next to it.
    Reads the local cache only: never the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    if not isinstance(found, str) or not Path(found).exists():
        return False
    return _has_weights(Path(found).parent)


def framepack_install_problem(settings) -> InstallProblem | None:
    """None when the FramePack weights are on this machine; otherwise what is missing and the fix.

    A folder (FRAMEPACK_DIR) must be complete in diffusers layout; hub ids count only when the
    Hugging Face cache already holds them. Nothing here touches the network.
    """
    fix = framepack_fix_command(settings)
    folder = (settings.framepack_dir or "").strip()
    if folder and (
        Path(folder).expanduser().is_absolute() or folder.startswith(".") or Path(folder).expanduser().exists()
    ):
        problem = _folder_problem(Path(folder).expanduser())
        if problem is None:
            return None
        return InstallProblem(
            missing=f"FramePack ({folder})",
            code="framepack_incomplete",
            params={"problem": problem, "fix": fix},
            fix=fix,
        )
    repos = (
        [folder]
        if folder
        else [settings.framepack_transformer, settings.framepack_base, settings.framepack_image_encoder]
    )
    files = ["model_index.json"] if folder else ["config.json", "model_index.json", "image_encoder/config.json"]
    missing = [repo for repo, name in zip(repos, files) if not _hub_cached(repo, name)]
    if not missing:
        return None
    names = ", ".join(missing)
    return InstallProblem(
        missing=names,
        code="framepack_not_downloaded",
        params={"names": names, "fix": fix},
        fix=fix,
    )


# ------------------------------------------------------------------------------------------------
# Wan: two models behind the one `wan` engine (STUDIO_WAN_MODEL picks), each a diffusers-layout
# folder under STUDIO_MODELS_DIR plus the fast mode's LightX2V LoRA file(s) in DIR/wan-loras.
#
# What was checked against public listings (Hugging Face pages, read through a search index, May
# 2026; this machine cannot reach the hub) and what was not:
#
# Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers (tagged WanImageToVideoPipeline, Apache-2.0):
#   seen  image_encoder/config.json 583 B + model.safetensors 1.26 GB (tree/main/image_encoder);
#         vae/diffusion_pytorch_model.safetensors 508 MB, sha256 d6e524b3fffede1787a74e81b30976dc
#         e5400c4439ba64222168e607ed19e793 (blob at commit 17c30769b1e0b5dcaa1799b117bf20a9c31f59d7);
#         image_processor/vocab.json 862 kB, tokenizer.json 3.64 MB;
#         text_encoder/config.json: UMT5EncoderModel (google/umt5-xxl) d_model 4096, d_ff 10240,
#         24 layers, 64 heads.
#   transformer/config.json: NOT read from the hub. The values in
#         tests/fixtures/wan21_flf2v_transformer_config.json are those diffusers' own conversion
#         script writes for this repo (scripts/convert_wan_to_diffusers.py, model type
#         "Wan-FLF2V-14B-720P": image_dim 1280, added_kv_proj_dim 5120, pos_embed_seq_len 514, …).
#   NOT seen: the transformer's shard names and sizes, model_index.json, the scheduler class.
#         No file name is hard-coded for them: the download lists the repo's tree at run time
#         (`scripts/download_models.py`) and checks every file against the hub's own hashes.
# lightx2v/Wan2.1-Distill-Loras: wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors, 739 MB (tree).
#
# Wan-AI/Wan2.2-I2V-A14B-Diffusers (tagged WanImageToVideoPipeline):
#   seen  transformer/ and transformer_2/ as diffusion_pytorch_model-000NN-of-00012.safetensors
#         (shards 4, 5, 7 seen at 4.92 GB each, i.e. fp32: ~57 GB per expert); text_encoder/ 11.4 GB
#         (model-0000N-of-00003.safetensors 4.94/4.98/1.44 GB + index); commit 2ec9bda.
#   the transformer config diffusers' conversion writes ("Wan2.2-I2V-14B-720p", diffusers PR
#         #12004): in_channels 36, added_kv_proj_dim None, no image_dim (no CLIP branch), 40 layers.
#   model_index.json: NOT read from Wan-AI's repo; a derivative of it (Video-Reason/VBVR-Wan2.2)
#         lists boundary_ratio 0.9, image_encoder/image_processor [null, null], transformer_2,
#         UniPCMultistepScheduler — the layout the tiny test model copies.
# lightx2v/Wan2.2-Distill-Loras (blob pages, commit 3ece978):
#         wan2.2_i2v_A14b_high_noise_lora_rank64_lightx2v_4step_1022.safetensors 635 MB, sha256
#         887c3bdeb74e83859c920438e16ca31f39ab18ce189abc5f0e36f8348c5bbb19 (634,645,944 B);
#         wan2.2_i2v_A14b_low_noise_lora_rank64_lightx2v_4step_1022.safetensors 739 MB, sha256
#         8833bd4fd7c8eabebf0bc8ee5cfaf47f4f310ce116928a02c1adf8941dd4b0f1 (739,472,104 B).
#         Their key names were not read; the loader takes any format diffusers' Wan converter reads.


@dataclass(frozen=True)
class WanModel:
    key: str  # STUDIO_WAN_MODEL's value
    label: str  # as a person names it (messages, /api/health)
    repo: str
    folder: str  # under STUDIO_MODELS_DIR
    group: str  # `scripts/setup.sh --only <group>` fetches it
    components: tuple[str, ...]  # the repo's folders the pipeline loads
    approx_gb: int  # download size, for the not-installed sentence (the download states the real sum)
    lora_repo: str
    # (pipeline attribute, file): each LoRA goes on the transformer it was distilled for.
    loras: tuple[tuple[str, str], ...]
    guidance: float  # the full mode's CFG scale (the model's published default)
    resident_min_gib: float  # GPU memory from which every weight stays on the GPU
    # Host RAM from which the group offload keeps its pinned copy of every weight in RAM; below it the
    # layers stream from files on disk (`wan_loading.placement_for`).
    pinned_ram_min_gib: float


WAN_LORA_FOLDER = "wan-loras"
WAN21 = WanModel(
    key="wan2.1-flf2v",
    label="Wan 2.1 FLF2V 14B",
    repo="Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
    folder="wan2.1-flf2v-14b-720p",
    group="wan",
    components=("transformer", "text_encoder", "tokenizer", "vae", "image_encoder", "image_processor", "scheduler"),
    approx_gb=80,  # transformer (fp32 on the hub, by the I2V 720P sibling's 14 shards), UMT5-XXL, CLIP 1.26 GB, VAE
    lora_repo="lightx2v/Wan2.1-Distill-Loras",
    # LightX2V's own 4-step step+CFG distillation of Wan 2.1 I2V 14B (FLF2V is a fine-tune of I2V
    # 720P; the I2V LoRA on it is community practice, not a published pairing).
    loras=(("transformer", "wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors"),),
    guidance=5.0,  # diffusers' WanImageToVideoPipeline default
    resident_min_gib=64.0,
    pinned_ram_min_gib=80.0,  # measured: 68 GiB peak RSS under the group offload (H100, 480p)
)
WAN22 = WanModel(
    key="wan2.2-i2v-a14b",
    label="Wan 2.2 I2V A14B",
    repo="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
    folder="wan2.2-i2v-a14b",
    group="wan22",
    # No CLIP image encoder: Wan 2.2's experts condition on the VAE latents only.
    components=("transformer", "transformer_2", "text_encoder", "tokenizer", "vae", "scheduler"),
    approx_gb=127,  # two fp32 experts (~57 GB each), UMT5-XXL 11.4 GB, VAE
    lora_repo="lightx2v/Wan2.2-Distill-Loras",
    # The high-noise LoRA on `transformer` (timesteps >= boundary), the low-noise one on `transformer_2`.
    loras=(
        ("transformer", "wan2.2_i2v_A14b_high_noise_lora_rank64_lightx2v_4step_1022.safetensors"),
        ("transformer_2", "wan2.2_i2v_A14b_low_noise_lora_rank64_lightx2v_4step_1022.safetensors"),
    ),
    guidance=3.5,  # Wan 2.2's own I2V A14B sample_guide_scale (both stages)
    # Both bf16 experts (2 × 28.6 GB) + UMT5-XXL (11.4 GB) + 720p activations: an 80 GB card is too
    # tight, the model-level offload (one expert on the GPU at a time) runs there instead.
    resident_min_gib=96.0,
    pinned_ram_min_gib=112.0,  # estimate: 2.1's measured 68 GiB + the second expert's 28.6 GB, + margin
)
WAN_MODELS: dict[str, WanModel] = {m.key: m for m in (WAN21, WAN22)}
DEFAULT_WAN_MODEL = WAN21.key

# Wan 2.1's names, as the rest of the studio and its tests knew them before the model choice.
WAN_REPO = WAN21.repo
WAN_FOLDER = WAN21.folder  # under STUDIO_MODELS_DIR: what `--only wan` assembles
WAN_APPROX_GB = WAN21.approx_gb
WAN_LORA_REPO = WAN21.lora_repo
WAN_LORA_FILE = WAN21.loras[0][1]


def wan_model(settings) -> WanModel:
    return WAN_MODELS[getattr(settings, "wan_model", DEFAULT_WAN_MODEL) or DEFAULT_WAN_MODEL]


def wan_folder(settings) -> Path:
    return Path(settings.models_dir) / wan_model(settings).folder


def wan_lora_paths(settings) -> dict[str, Path]:
    """The fast mode's LoRA files of the chosen model, by the pipeline attribute each goes on."""
    folder = Path(settings.models_dir) / WAN_LORA_FOLDER
    return {attr: folder / name for attr, name in wan_model(settings).loras}


def wan_lora_path(settings) -> Path:
    """The chosen model's first LoRA file (Wan 2.1's only one; Wan 2.2's high-noise one)."""
    return next(iter(wan_lora_paths(settings).values()))


def wan_lora_missing(settings) -> list[Path]:
    return [p for p in wan_lora_paths(settings).values() if not p.exists()]


def wan_install_problem(settings) -> InstallProblem | None:
    """None when the chosen Wan pipeline is complete on disk; otherwise what is missing and the
    fix. Reads files only."""
    model = wan_model(settings)
    fix = setup_fix_command(settings, model.group)
    problem = _folder_problem(wan_folder(settings))
    if problem is None:
        return None
    return InstallProblem(
        missing=f"{model.label} ({model.repo})",
        code="wan_not_installed",
        params={"problem": problem, "fix": fix, "gb": model.approx_gb, "model": model.label},
        fix=fix,
    )


# ------------------------------------------------------------------------------------------------
# The model hub: asked once, remembered

_hub_offline_by_us = False


def settle_hub_mode(settings, timeout: float = 3.0) -> str | None:
    """Before a hub-backed model loads: one TCP connect to the hub (HF_ENDPOINT). When it fails,
    huggingface_hub is switched to its offline mode (cache only) for `unreachable_retry_s`, so a
    cached model loads at once and a missing one fails at once, instead of every file being
    retried with back-off. Returns why the hub is unreachable, or None."""
    global _hub_offline_by_us
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    if constants.HF_HUB_OFFLINE and not _hub_offline_by_us:
        return "offline mode is set (HF_HUB_OFFLINE)"
    from backend.utils.downloads import host_unreachable

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    why = host_unreachable(endpoint, timeout=timeout, retry_s=float(getattr(settings, "unreachable_retry_s", 120.0)))
    constants.HF_HUB_OFFLINE = why is not None
    _hub_offline_by_us = why is not None
    return why
