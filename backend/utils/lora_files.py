"""The LoRA files of `STUDIO_LORA_DIR`: what each one is, read from its safetensors header alone.

No torch: the page's list and the check at submit read only the header (8-byte length + JSON of
names, dtypes, shapes and offsets), so a 600 MB LoRA costs a few kilobytes to inspect. What a
file's key names say:

| keys | format | engine |
|---|---|---|
| `lora_unet_double_blocks_*` / `lora_unet_single_blocks_*` | kohya-ss / musubi-tuner HunyuanVideo (what FramePack-Studio loads) | framepack |
| `diffusion_model.double_blocks.*` / `single_blocks.*` | original HunyuanVideo | framepack |
| `transformer_blocks.*` / `single_transformer_blocks.*` (optional `transformer.` prefix) | diffusers / PEFT HunyuanVideo | framepack |
| `diffusion_model.blocks.N.self_attn.*` | ComfyUI / LightX2V Wan | wan |
| `lora_unet_blocks_N_self_attn_*` | musubi-tuner Wan | wan |
| `blocks.N.attn1.*` (optional `transformer.` prefix) | diffusers / PEFT Wan | wan |

The rank is the first dimension of a down (A) matrix; the model width it was trained for is the
second dimension of an attention input's down matrix, checked against the installed model's
`transformer/config.json` when there is one (a Wan 1.3B LoRA does not fit the 14B model).
Converting the keys to the model's layer names is diffusers' job when the LoRA is applied.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUFFIX = ".safetensors"
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
NAME_RE = re.compile(r"^[^/\\\x00]{1,200}\.safetensors$")
DOWN = (".lora_down.weight", ".lora_A.weight")
ATTN_INPUT = ("to_q.lora", "attn_qkv.lora", "self_attn.q.lora", "self_attn_q.lora", "linear1.lora", "attn1.to_q")
WAN_COMFY = re.compile(r"^diffusion_model\.blocks\.\d+\.")
WAN_MUSUBI = re.compile(r"^lora_unet_blocks_\d+_")
WAN_DIFFUSERS = re.compile(r"^(transformer\.)?blocks\.\d+\.(attn1|attn2|ffn)\.")
HV_KOHYA = re.compile(r"^lora_unet_(double|single)_blocks_\d+_")
HV_ORIGINAL = re.compile(r"^diffusion_model\.(double|single)_blocks\.\d+\.")
HV_DIFFUSERS = re.compile(r"^(transformer\.)?(single_)?transformer_blocks\.\d+\.")


class LoraProblem(Exception):
    """Why a chosen LoRA cannot be used: a catalogue code and its parameters."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code)
        self.code = code
        self.params = params


@dataclass
class LoraFacts:
    name: str
    size_bytes: int
    format: str | None = None
    engine: str | None = None
    rank: int | None = None
    width: int | None = None  # the model width its attention inputs expect
    layers: int = 0
    problem: str | None = None  # a catalogue code when it fits no engine or cannot be read
    params: dict = field(default_factory=dict)


def read_header(path: Path) -> dict:
    """The safetensors header (tensor name → dtype, shape, data_offsets); raises LoraProblem."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("shorter than a safetensors header")
            (length,) = struct.unpack("<Q", raw)
            if length > min(MAX_HEADER, size - 8):
                raise ValueError("header length past the end of the file")
            header = json.loads(f.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is no JSON object")
        header.pop("__metadata__", None)
        end = 0
        for entry in header.values():
            start, stop = entry["data_offsets"]
            if not (0 <= start <= stop) or not isinstance(entry["shape"], list):
                raise ValueError("bad tensor entry")
            end = max(end, stop)
        if 8 + length + end > size:
            raise ValueError("tensor data past the end of the file (truncated?)")
        return header
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise LoraProblem("lora_unreadable", name=path.name, why=str(exc)[:200]) from exc


def classify(keys: list[str]) -> tuple[str | None, str | None]:
    """(format, engine) from the key names, or (None, None) when they name no known layout."""
    tests = (
        (HV_KOHYA, "kohya", "framepack"),
        (HV_ORIGINAL, "original", "framepack"),
        (HV_DIFFUSERS, "diffusers", "framepack"),
        (WAN_MUSUBI, "musubi", "wan"),
        (WAN_COMFY, "comfyui", "wan"),
        (WAN_DIFFUSERS, "diffusers", "wan"),
    )
    lora_keys = [k for k in keys if ".lora_" in k or k.endswith(".alpha")]
    for pattern, fmt, engine in tests:
        if lora_keys and sum(1 for k in lora_keys if pattern.match(k)) * 2 >= len(lora_keys):
            return fmt, engine
    return None, None


def inspect(path: Path, widths: dict[str, int | None] | None = None) -> LoraFacts:
    """What `path` is and which engine it fits; `widths` is each engine's installed model width."""
    facts = LoraFacts(name=path.name, size_bytes=path.stat().st_size)
    try:
        header = read_header(path)
    except LoraProblem as problem:
        facts.problem, facts.params = problem.code, problem.params
        return facts
    keys = list(header)
    facts.format, facts.engine = classify(keys)
    downs = {k: header[k]["shape"] for k in keys if k.endswith(DOWN) and len(header[k]["shape"]) == 2}
    facts.layers = len(downs)
    if not downs or facts.engine is None:
        facts.format = facts.engine = None
        facts.problem, facts.params = "lora_no_engine", {"name": path.name}
        return facts
    facts.rank = max(shape[0] for shape in downs.values())
    inputs = [shape[1] for k, shape in downs.items() if any(a in k for a in ATTN_INPUT)]
    facts.width = max(inputs) if inputs else None
    want = (widths or {}).get(facts.engine)
    if want and facts.width and facts.width != want:
        facts.problem = "lora_wrong_width"
        facts.params = {"name": path.name, "engine": facts.engine, "width": facts.width, "model": want}
    return facts


def model_width(config_file: Path) -> int | None:
    """heads × head dim of an installed transformer (its diffusers config.json), or None."""
    try:
        config = json.loads(config_file.read_text())
        return int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or name.startswith(".") or name != Path(name).name:
        raise LoraProblem("lora_missing", name=name[:200])


def resolve(folder: Path, name: str) -> Path:
    """The file of a LoRA named `name` (a file name in the folder, nothing else); raises LoraProblem."""
    check_name(name)
    path = Path(folder) / name
    if not path.is_file():
        raise LoraProblem("lora_missing", name=name)
    return path


def listing(folder: Path, widths: dict[str, int | None] | None = None) -> list[LoraFacts]:
    """Every `.safetensors` file directly in `folder`, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(SUFFIX) and NAME_RE.match(p.name))
    return [inspect(p, widths) for p in files if not p.name.startswith(".")]
