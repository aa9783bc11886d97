"""Download every model the studio uses into one folder, and write where they went into `.env`.

    python scripts/download_models.py --base-dir DIR [--only framepack|post|analysis|wan|wan22] [--env-file .env]

- FramePack: the three hub repos named by FRAMEPACK_TRANSFORMER / FRAMEPACK_BASE /
  FRAMEPACK_IMAGE_ENCODER are fetched file by file into DIR/hf-cache (huggingface_hub's cache:
  resumable, one progress bar per file, HF_TOKEN honoured) and DIR/framepack is assembled in
  diffusers pipeline layout out of symlinks into that cache (hard links where symlinks are not
  supported), so no weight file exists twice. Only the components the pipeline needs are
  fetched: HunyuanVideo's own 25 GB transformer is skipped.
- Post-processing: the URL weights of backend/utils/model_registry.py through
  backend/utils/downloads.py (resume with HTTP Range, sha256/size checked before the final name).
- Analysis: the Korean->English Marian translator (STUDIO_MARIAN_KO_EN_DIR).
- Wan (only with `--only wan`, about 80 GB): the diffusers-layout repo of Wan 2.1 FLF2V 14B into
  DIR/<WAN_FOLDER> (links into the cache, its own model_index.json) and the fast mode's LightX2V
  LoRA file into DIR/wan-loras, both named in backend/utils/model_registry.py.
- Wan 2.2 I2V A14B (only with `--only wan22`, about 127 GB): the same for `Wan-AI/Wan2.2-I2V-A14B-
  Diffusers` (two experts, no image encoder) and its two LightX2V LoRAs (high noise, low noise);
  the studio runs it with STUDIO_WAN_MODEL=wan2.2-i2v-a14b.

Every hub file is checked against the hub's own hashes (sha256 for LFS files, the git blob sha1
for small ones). A manifest (DIR/.studio-downloads.json) records what was verified, so a second
run touches no network and finishes in seconds. Before any byte is fetched the free disk space is
compared with what is still missing.

A hub that cannot be reached is detected by the first request that fails and is not asked again
in the same run: the remaining hub groups are reported as skipped at once, so an offline set-up
ends in seconds. Every HTTP wait has a timeout (huggingface_hub's, and `download_file`'s).

Exit status: 0 when everything is in place, 1 when some models are missing (each is printed with
what to do, and a summary at the end; `scripts/setup.sh` still succeeds then, because the studio
starts without them), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere: `backend` must import

MANIFEST_NAME = ".studio-downloads.json"
GROUPS = ("framepack", "post", "analysis", "wan", "wan22")
DEFAULT_GROUPS = ("framepack", "post", "analysis")  # Wan is 80 (2.2: 127) GB more: fetched when asked for
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx")
KEEP_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".spm", ".tiktoken", ".bin")
# Free space kept on top of what the files need: the HF cache writes `.incomplete` files next to
# the blobs, and a full disk breaks more than this download.
SPACE_MARGIN = 1.05
# Registry weights without a published size are counted at this much each in the space check.
UNKNOWN_WEIGHT_BYTES = 400 * 1024 * 1024


class ModelError(RuntimeError):
    """A model could not be put in place; `str()` says which and what to do."""


class NotEnoughSpace(RuntimeError):
    """The disk cannot hold what is still missing; nothing was fetched."""


# ------------------------------------------------------------------------------------------------
# What to fetch


@dataclass(frozen=True)
class Component:
    source: str  # folder inside the repo ("" = repo root, top-level files only)
    target: str  # folder inside the assembled pipeline


@dataclass(frozen=True)
class HubPart:
    repo: str
    components: tuple[Component, ...]
    index_file: bool = False  # also fetch model_index.json (read when assembling; never linked)


@dataclass
class PlannedFile:
    repo: str
    revision: str
    path: str
    size: int
    sha256: str | None  # LFS files
    blob_id: str | None  # git blob sha1 (small files)
    target: Path | None  # where the assembled folder links it; None for index files


@dataclass
class Report:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    manual: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    missing_groups: list[str] = field(default_factory=list)  # for the closing summary
    hub_down: str | None = None  # set by the first hub request that could not connect

    def fail(self, group: str, text: str) -> None:
        self.failed.append(text)
        if group not in self.missing_groups:
            self.missing_groups.append(group)


def framepack_parts(settings) -> list[HubPart]:
    base = ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler")
    return [
        HubPart(settings.framepack_transformer, (Component("", "transformer"),)),
        HubPart(settings.framepack_base, tuple(Component(c, c) for c in base), index_file=True),
        HubPart(
            settings.framepack_image_encoder,
            (Component("image_encoder", "image_encoder"), Component("feature_extractor", "feature_extractor")),
            index_file=True,
        ),
    ]


MARIAN_REPO = "Helsinki-NLP/opus-mt-ko-en"


def select_files(paths: Iterable[str], source: str) -> list[str]:
    """The files of one component: directly inside `source`, with a useful suffix, and only one
    weight format (safetensors when the repo has it, so .bin twins are not fetched too)."""
    prefix = f"{source}/" if source else ""
    inside = [p for p in paths if p.startswith(prefix) and "/" not in p[len(prefix) :]]
    chosen = [p for p in inside if p.endswith(KEEP_SUFFIXES)]
    if any(p.endswith(".safetensors") for p in chosen):
        chosen = [p for p in chosen if not p.endswith(".bin")]
    if not source:
        chosen = [p for p in chosen if Path(p).name != "model_index.json"]
    return sorted(chosen)


# ------------------------------------------------------------------------------------------------
# Checks


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_hub_file(local: Path, planned: PlannedFile) -> None:
    real = local.resolve()
    if real.stat().st_size != planned.size:
        raise ModelError(f"{planned.repo}/{planned.path}: size {real.stat().st_size}, expected {planned.size}")
    if planned.sha256:
        actual = file_sha256(real)
        if actual != planned.sha256:
            raise ModelError(f"{planned.repo}/{planned.path}: sha256 {actual} != {planned.sha256}")
    elif planned.blob_id:
        actual = git_blob_sha1(real)
        if actual != planned.blob_id:
            raise ModelError(f"{planned.repo}/{planned.path}: git sha1 {actual} != {planned.blob_id}")


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def check_space(base_dir: Path, needed: int) -> None:
    base_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base_dir).free
    print(f"[disk] {human(needed)} still to download, {human(free)} free in {base_dir}", flush=True)
    if needed * SPACE_MARGIN > free:
        raise NotEnoughSpace(
            f"[disk] Not enough space: the models need {human(needed * SPACE_MARGIN)} "
            f"(with margin), {human(free)} is free in {base_dir}. Free some space or pass "
            "--base-dir on a larger disk, then run set-up again (finished files are kept)."
        )


# ------------------------------------------------------------------------------------------------
# Manifest: what a previous run verified, so a second run needs no network


class Manifest:
    def __init__(self, base_dir: Path):
        self.path = base_dir / MANIFEST_NAME
        try:
            self.data: dict = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def complete(self, group: str, key: list[str]) -> bool:
        entry = self.data.get(group)
        if not entry or entry.get("key") != key:
            return False
        for name, size in entry.get("files", {}).items():
            p = Path(name)
            try:
                if p.stat().st_size != size:  # stat follows the symlink into the cache
                    return False
            except OSError:
                return False
        return True

    def record(self, group: str, key: list[str], files: Iterable[Path], env: dict[str, str]) -> None:
        self.data[group] = {
            "key": key,
            "files": {str(p): p.stat().st_size for p in files},
            "env": env,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def env(self, group: str) -> dict[str, str]:
        return dict(self.data.get(group, {}).get("env", {}))


# ------------------------------------------------------------------------------------------------
# Linking (the assembled folders point into the cache; nothing is copied)


def link_into(src: Path, dst: Path) -> None:
    real = src.resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        if dst.resolve() == real:
            return
        dst.unlink()
    try:
        # Relative, so the whole base folder can move (a Drive mount, a Docker volume path).
        os.symlink(os.path.relpath(real, dst.parent), dst)
    except OSError:
        try:
            os.link(real, dst)
        except OSError as exc:
            raise ModelError(
                f"cannot link {dst} to {real}: this filesystem supports neither symlinks nor hard "
                "links; put --base-dir on a local disk"
            ) from exc


# ------------------------------------------------------------------------------------------------
# Hub


def explain_hub_error(name: str, repo: str, exc: Exception) -> ModelError:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    if isinstance(exc, GatedRepoError) or (
        isinstance(exc, HfHubHTTPError) and getattr(exc.response, "status_code", None) in (401, 403)
    ):
        hint = (
            f"this repo needs a Hugging Face token: accept its licence at https://huggingface.co/{repo} "
            "and set HF_TOKEN (in .env or the environment), then run set-up again"
        )
    elif isinstance(exc, RepositoryNotFoundError):
        hint = f"the repo {repo} does not exist or is private: check the setting that names it, or set HF_TOKEN"
    elif isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        hint = "the disk is full: free space or use a larger --base-dir, then run set-up again"
    elif isinstance(exc, ModelError):
        hint = "a file arrived damaged and was deleted: run set-up again to fetch it anew"
    else:
        hint = "check the network connection and run set-up again: finished files are kept and partial ones resume"
        error = ModelError(f"[{name}] {repo}: {text}\n    -> {hint}")
        error.network = True  # the hub itself could not be reached
        return error
    return ModelError(f"[{name}] {repo}: {text}\n    -> {hint}")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def note_hub_failure(report: Report, exc: ModelError) -> None:
    if getattr(exc, "network", False) and report.hub_down is None:
        report.hub_down = hub_endpoint()


def plan_hub(parts: list[HubPart], token: str | None, target_root: Path) -> list[PlannedFile]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(token=token)
    planned: list[PlannedFile] = []
    for part in parts:
        try:
            sha = api.repo_info(part.repo).sha
            tree = {
                f.path: f
                for f in api.list_repo_tree(part.repo, recursive=True, revision=sha)
                if isinstance(f, RepoFile)
            }
        except Exception as exc:  # noqa: BLE001 - every hub failure gets its explanation
            raise explain_hub_error("list", part.repo, exc) from exc

        def add(path: str, target: Path | None) -> None:
            entry = tree[path]
            lfs = entry.lfs
            planned.append(
                PlannedFile(
                    repo=part.repo,
                    revision=sha,
                    path=path,
                    size=lfs.size if lfs is not None else entry.size,
                    sha256=lfs.sha256 if lfs is not None else None,
                    blob_id=entry.blob_id,
                    target=target,
                )
            )

        for comp in part.components:
            files = select_files(tree, comp.source)
            if not files:
                raise ModelError(f"{part.repo}: no files for component '{comp.source or '(root)'}'")
            for path in files:
                add(path, target_root / comp.target / Path(path).name)
        if part.index_file and "model_index.json" in tree:
            add("model_index.json", None)
    return planned


def cached_blob(planned: PlannedFile, cache_dir: Path) -> Path | None:
    """The local file of `planned` when the cache already holds it in full."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(planned.repo, planned.path, cache_dir=cache_dir, revision=planned.revision)
    if isinstance(found, str) and Path(found).exists() and Path(found).stat().st_size == planned.size:
        return Path(found)
    return None


def fetch_planned(
    planned: list[PlannedFile], base_dir: Path, cache_dir: Path, token: str | None, tag: str, label: str, report: Report
) -> list[tuple[PlannedFile, Path]] | None:
    """Checks the disk space for what is not cached yet, then fetches every planned file.

    Returns (planned, local path) pairs, or None after recording the first failure in `report`.
    """
    check_space(base_dir, sum(p.size for p in planned if cached_blob(p, cache_dir) is None))
    fetched = []
    for p in planned:
        print(f"[{tag}] {p.repo}/{p.path} ({human(p.size)})", flush=True)
        try:
            fetched.append((p, fetch_hub(p, cache_dir, token)))
        except Exception as exc:  # noqa: BLE001
            error = explain_hub_error(p.path, p.repo, exc)
            note_hub_failure(report, error)
            report.fail(tag, f"{label}: {error}")
            return None
    return fetched


def fetch_hub(planned: PlannedFile, cache_dir: Path, token: str | None) -> Path:
    from huggingface_hub import hf_hub_download

    local = Path(
        hf_hub_download(planned.repo, planned.path, revision=planned.revision, cache_dir=cache_dir, token=token)
    )
    try:
        verify_hub_file(local, planned)
    except ModelError:
        # Leave no damaged file behind: the blob and the snapshot link both go.
        blob = local.resolve()
        local.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise
    return local


PIPELINE_CLASSES = {
    # Used when a source repo's model_index.json lacks an entry (the image-encoder repo is a
    # Flux Redux pipeline and the transformer repo has no index at all).
    "transformer": ["diffusers", "HunyuanVideoFramepackTransformer3DModel"],
    "image_encoder": ["transformers", "SiglipVisionModel"],
    "feature_extractor": ["transformers", "SiglipImageProcessor"],
}


def write_model_index(target_root: Path, indexes: list[dict], components: list[str]) -> None:
    merged: dict = {}
    for index in indexes:
        merged.update({k: v for k, v in index.items() if not k.startswith("_")})
    out: dict = {"_class_name": "HunyuanVideoFramepackPipeline"}
    for version_key in ("_diffusers_version",):
        for index in indexes:
            if version_key in index:
                out[version_key] = index[version_key]
    for comp in sorted(components):
        if comp == "transformer":
            out[comp] = PIPELINE_CLASSES[comp]  # the base repo's entry is HunyuanVideo's own
        else:
            out[comp] = merged.get(comp) or PIPELINE_CLASSES[comp]
    (target_root / "model_index.json").write_text(json.dumps(out, indent=2) + "\n")


def licence_notice(spec) -> str:
    """An engine's licence as the engine picker shows it, in English and Korean, one `[licence]`
    line each: the name and text's address, then the note (for FramePack, where the licence text
    says it does not apply)."""
    from backend.contracts.messages import LANGS, render

    licence = spec.licence
    lines = []
    for lang in LANGS:
        name = render(licence.name, lang)
        line = render("licence_line", lang, {"name": name, "url": licence.url}) if licence.url else name
        lines.append(f"[licence] {render(spec.label, lang)}: {line}")
        if licence.note:
            lines.append(f"[licence] {render(licence.note, lang)}")
    return "\n".join(lines)


def download_framepack(settings, base_dir: Path, token: str | None, manifest: Manifest, report: Report) -> None:
    from backend.pipeline.framepack.spec import SPEC

    parts = framepack_parts(settings)
    key = [p.repo for p in parts]
    target_root = base_dir / "framepack"
    if manifest.complete("framepack", key):
        print("[framepack] already complete, nothing to download", flush=True)
        report.done.append("framepack")
        report.env.update(manifest.env("framepack"))
        return
    # Before any request, so it is read even when the hub cannot be reached.
    print(licence_notice(SPEC), flush=True)
    cache_dir = base_dir / "hf-cache"
    if report.hub_down:
        report.fail("framepack", f"FramePack: skipped, the model hub ({report.hub_down}) could not be reached")
        return
    try:
        planned = plan_hub(parts, token, target_root)
    except ModelError as exc:
        note_hub_failure(report, exc)
        report.fail("framepack", f"FramePack: {exc}")
        return
    fetched = fetch_planned(planned, base_dir, cache_dir, token, "framepack", "FramePack", report)
    if fetched is None:
        return
    linked: list[Path] = []
    indexes: list[dict] = []
    for p, local in fetched:
        if p.target is None:
            indexes.append(json.loads(local.read_text()))
        else:
            link_into(local, p.target)
            linked.append(p.target)
    components = sorted({t.parent.name for t in linked})
    write_model_index(target_root, indexes, components)
    env = {"FRAMEPACK_DIR": str(target_root)}
    manifest.record("framepack", key, linked + [target_root / "model_index.json"], env)
    report.env.update(env)
    report.done.append("framepack")


def download_marian(base_dir: Path, token: str | None, manifest: Manifest, report: Report) -> None:
    key = [MARIAN_REPO]
    if manifest.complete("analysis", key):
        print("[analysis] already complete, nothing to download", flush=True)
        report.env.update(manifest.env("analysis"))
        report.done.append("analysis")
        return
    target = base_dir / "marian-ko-en"
    cache_dir = base_dir / "hf-cache"
    if report.hub_down:
        report.fail("analysis", f"Translator: skipped, the model hub ({report.hub_down}) could not be reached")
        return
    try:
        planned = plan_hub([HubPart(MARIAN_REPO, (Component("", "."),))], token, target)
    except ModelError as exc:
        note_hub_failure(report, exc)
        report.fail("analysis", f"Translator: {exc}")
        return
    fetched = fetch_planned(planned, base_dir, cache_dir, token, "analysis", "Translator", report)
    if fetched is None:
        return
    linked = []
    for p, local in fetched:
        link_into(local, target / Path(p.path).name)
        linked.append(target / Path(p.path).name)
    env = {"STUDIO_MARIAN_KO_EN_DIR": str(target)}
    manifest.record("analysis", key, linked, env)
    report.env.update(env)
    report.done.append("analysis")


def download_wan(base_dir: Path, token: str | None, manifest: Manifest, report: Report, model=None) -> None:
    """One Wan model of the registry (`WAN_MODELS`): its diffusers-layout repo into DIR/<folder>
    (links into the cache, the repo's own model_index.json) and its LightX2V LoRA file(s)."""
    from backend.utils.model_registry import WAN21, WAN_LORA_FOLDER

    model = model or WAN21
    group, label = model.group, model.label
    files = [name for _attr, name in model.loras]
    key = [model.repo] + [f"{model.lora_repo}/{name}" for name in files]
    if manifest.complete(group, key):
        print(f"[{group}] already complete, nothing to download", flush=True)
        report.done.append(group)
        return
    if report.hub_down:
        report.fail(group, f"{label}: skipped, the model hub ({report.hub_down}) could not be reached")
        return
    target_root = base_dir / model.folder
    try:
        planned = plan_hub(
            [HubPart(model.repo, tuple(Component(c, c) for c in model.components), index_file=True)],
            token,
            target_root,
        )
        lora = plan_hub([HubPart(model.lora_repo, (Component("", WAN_LORA_FOLDER),))], token, base_dir)
    except ModelError as exc:
        note_hub_failure(report, exc)
        report.fail(group, f"{label}: {exc}")
        return
    lora = [p for p in lora if p.path in files]  # the repo also holds the T2V and other LoRAs
    absent = sorted(set(files) - {p.path for p in lora})
    if absent:
        report.fail(group, f"{label}: {model.lora_repo} has no {', '.join(absent)}")
        return
    fetched = fetch_planned(planned + lora, base_dir, base_dir / "hf-cache", token, group, label, report)
    if fetched is None:
        return
    linked: list[Path] = []
    for p, local in fetched:
        target = p.target or target_root / "model_index.json"  # the repo's own index: already a WanImageToVideoPipeline
        link_into(local, target)
        linked.append(target)
    manifest.record(group, key, linked, {})
    report.done.append(group)


# ------------------------------------------------------------------------------------------------
# URL weights (post-processing)

POST_DIRS = {
    "upscaler_dir": ("UPSCALER_DIR", "realesrgan"),
    "codeformer_dir": ("CODEFORMER_DIR", "codeformer"),
    "rife_dir": ("RIFE_DIR", "rife"),
    "facexlib_dir": ("FACEXLIB_DIR", "facexlib"),
}


class _Bar:
    """One progress bar per file (tqdm comes with huggingface_hub)."""

    def __init__(self, label: str):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.label = label
        self.bar = None

    def __call__(self, p) -> None:
        if self.bar is None:
            self.bar = self._tqdm(total=p.total, initial=0, unit="B", unit_scale=True, desc=self.label)
        self.bar.update(p.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def download_post(base_dir: Path, manifest: Manifest, report: Report, mirror: str = "") -> None:
    from backend.utils.downloads import DownloadError, download_file
    from backend.utils.model_registry import WEIGHTS, MissingWeightError, expected_checksum, verify_and_record

    dirs = {setting: base_dir / sub for setting, (_, sub) in POST_DIRS.items()}
    env = {POST_DIRS[s][0]: str(d) for s, d in dirs.items()}
    report.env.update(env)
    wanted = {name: spec for name, spec in WEIGHTS.items() if spec.url is not None}
    for name, spec in WEIGHTS.items():
        if name not in wanted:
            report.manual.append(
                f"{name}: no direct download exists; get {spec.filename} from {spec.source_note} "
                f"and put it at {dirs[spec.dir_setting] / spec.filename}"
            )
    key = sorted(wanted)
    if manifest.complete("post", key):
        print("[post] already complete, nothing to download", flush=True)
        report.done.append("post")
        return
    todo = [(n, s) for n, s in wanted.items() if not (dirs[s.dir_setting] / s.filename).exists()]
    check_space(base_dir, sum(s.size or UNKNOWN_WEIGHT_BYTES for _, s in todo))
    placed: list[Path] = []
    ok = True
    for name, spec in wanted.items():
        dest = dirs[spec.dir_setting] / spec.filename
        url = f"{mirror.rstrip('/')}/{spec.url.rsplit('/', 1)[-1]}" if mirror else spec.url
        bar = _Bar(spec.filename)
        try:
            sha256, size = expected_checksum(spec, dest)
            download_file(url, dest, sha256, size, progress=bar, timeout=60.0)
            verify_and_record(spec, dest, url)
            placed.append(dest)
        except MissingWeightError as exc:  # arrived, but not a usable file of its kind
            ok = False
            report.fail("post", f"[{name}] {exc.text('en')}")  # the set-up report is English
        except (DownloadError, OSError) as exc:
            ok = False
            hint = (
                "the disk is full: free space, then run set-up again"
                if getattr(exc, "errno", None) == 28
                else "check the network and run set-up again (a partial file resumes); or download "
                f"{url} by hand and put it at {dest}"
            )
            why = exc.text("en") if isinstance(exc, DownloadError) else exc
            report.fail("post", f"[{name}] {spec.filename}: {why}\n    -> {hint}")
        finally:
            bar.close()
    if ok:
        manifest.record("post", key, placed, env)
        report.done.append("post")


# ------------------------------------------------------------------------------------------------
# .env


def update_env_file(path: Path, values: dict[str, str]) -> None:
    """Sets `values` in the dotenv file, keeping every other line (and comments) as it was."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    seen: set[str] = set()
    out = []
    for line in lines:
        name = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if name in values:
            out.append(f"{name}={values[name]}")
            seen.add(name)
        else:
            out.append(line)
    missing = [k for k in values if k not in seen]
    if missing:
        if out and out[-1].strip():
            out.append("")
        out.append("# Written by scripts/download_models.py")
        out += [f"{k}={values[k]}" for k in missing]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------------


GROUP_NAMES = {
    "framepack": ("FramePack (the high-quality engine, about 45 GB)", "FramePack (고품질 엔진, 약 45 GB)"),
    "post": ("post-processing weights (face restore, upscale, RIFE)", "후처리 가중치 (얼굴 복원, 업스케일, RIFE)"),
    "analysis": ("the offline Korean->English translator", "오프라인 한영 번역기"),
    "wan": ("Wan 2.1 first-last-frame engine, about 80 GB", "Wan 2.1 첫·끝 프레임 엔진, 약 80 GB"),
    "wan22": (
        "Wan 2.2 I2V A14B for the Wan engine (STUDIO_WAN_MODEL=wan2.2-i2v-a14b), about 127 GB",
        "Wan 엔진용 Wan 2.2 I2V A14B (STUDIO_WAN_MODEL=wan2.2-i2v-a14b), 약 127 GB",
    ),
}


def summary(report: Report, base_dir: Path) -> str:
    """What is missing, what still works, and the one command per group that fetches it later."""
    lines = ["", "=" * 72, "Models still missing / 아직 받지 못한 모델:"]
    if report.hub_down:
        lines.append(f"  (the model hub {report.hub_down} could not be reached / 모델 허브에 연결할 수 없습니다)")
    for group in report.missing_groups:
        en, ko = GROUP_NAMES[group]
        lines.append(f"  - {en} / {ko}")
        lines.append(f"      bash scripts/setup.sh --base-dir {base_dir} --only {group}")
    lines += [
        "The studio starts anyway: the morph engine needs no weights, /api/health names what is",
        "missing, and post-processing weights also download on first use.",
        "스튜디오는 그대로 시작됩니다: 모프 엔진은 가중치가 필요 없고, /api/health 에 없는 모델이 표시됩니다.",
        "=" * 72,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-dir", required=True, type=Path, help="folder that receives every model")
    parser.add_argument("--only", choices=GROUPS, action="append", help="limit to a group (repeatable)")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env", help="dotenv file to update")
    parser.add_argument(
        "--weights-mirror",
        default=os.environ.get("STUDIO_WEIGHTS_MIRROR", ""),
        help="base URL serving the post-processing weight files by their file names (a mirror)",
    )
    args = parser.parse_args(argv)

    from backend.utils.config import Settings
    from backend.utils.model_registry import WAN22

    settings = Settings(_env_file=args.env_file if args.env_file.exists() else None)
    token = (settings.hf_token or os.environ.get("HF_TOKEN") or "").strip() or None
    base_dir = args.base_dir.expanduser().resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    groups = args.only or list(DEFAULT_GROUPS)
    manifest = Manifest(base_dir)
    report = Report(env={"STUDIO_MODELS_DIR": str(base_dir)})

    steps = {
        "framepack": lambda: download_framepack(settings, base_dir, token, manifest, report),
        "post": lambda: download_post(base_dir, manifest, report, mirror=args.weights_mirror),
        "analysis": lambda: download_marian(base_dir, token, manifest, report),
        "wan": lambda: download_wan(base_dir, token, manifest, report),
        "wan22": lambda: download_wan(base_dir, token, manifest, report, WAN22),
    }
    for group in GROUPS:
        if group not in groups:
            continue
        try:
            steps[group]()
        except NotEnoughSpace as exc:
            # Nothing of this group was fetched; a smaller group may still fit.
            report.fail(group, str(exc))

    update_env_file(args.env_file, report.env)
    print(f"[env] wrote {', '.join(sorted(report.env))} to {args.env_file}", flush=True)
    for line in report.manual:
        print(f"[manual] {line}", flush=True)
    for line in report.failed:
        print(f"[FAILED] {line}", file=sys.stderr, flush=True)
    if report.failed:
        print(summary(report, base_dir), file=sys.stderr, flush=True)
        return 1
    print(f"[done] {', '.join(report.done)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
