"""Per-transition options, checked against the engine before a job or a take is stored:

- `end_influence` (0.05–1.0): how hard the last image pulls. FramePack scales the last image's
  latent that anchors the end of the clip (FramePack-Studio's and eichi's "End Frame Influence");
  morph bends its dissolve so the last image arrives later; Wan 2.1's first–last-frame pipeline has
  no weight for its last image, so anything below 1.0 is refused for it rather than ignored.
- timed prompts (`[0s: …] [1.2s: …]`, `contracts/timed_prompts.py`): each start time snaps to a
  FramePack section; the planned parameters record each prompt's section (`prompt_sections`) so
  the params panel shows it. Wan makes a transition in one call with one prompt, so it refuses
  them; morph ignores prompts but checks the form, as the storyboard it previews will run on
  FramePack.
- keyframes (`contracts/keyframes.py`): an upload at a time inside one transition, snapped to the
  engine's grid (FramePack: a section boundary; Wan: a latent frame) strictly between the two
  images; the planned segment records where each lands (`keyframes`), so the page shows it and a
  re-roll or a resume makes the same transition. Morph has no model to condition, so it refuses
  them rather than showing a dissolve that ignores them.
- LoRAs (`STUDIO_LORA_DIR`): each file must exist, be readable, fit this engine and its model's
  width (read from the safetensors header alone, `utils/lora_files.py`); morph takes none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.contracts import messages
from backend.contracts.errors import JobError
from backend.contracts.keyframes import MAX_PER_TRANSITION, Grid, Placed
from backend.contracts.timed_prompts import EXAMPLE, MalformedTimedPrompt, is_timed, parse, section_of
from backend.pipeline.framepack.spec import FRAMES_PER_SECTION, NATIVE_FPS

SECTION_SECONDS = FRAMES_PER_SECTION / NATIVE_FPS  # 1.2 s
NO_END_INFLUENCE = frozenset({"wan"})
NO_TIMED_PROMPTS = frozenset({"wan"})


def check_end_influence(engine: str, value: float | None) -> None:
    if value is not None and value < 1.0 and engine in NO_END_INFLUENCE:
        raise JobError("engine_no_end_influence", engine=engine)


def check_engine(engine: str, end_influence: float | None, prompts: list[str | None]) -> None:
    """What the engine cannot do at all, refused before anything else (even before the engine's
    readiness): the person learns the option itself is the problem, not a missing model."""
    check_end_influence(engine, end_influence)
    if engine in NO_TIMED_PROMPTS:
        for i, text in enumerate(prompts):
            if is_timed(text):
                raise JobError("engine_no_timed_prompts", engine=engine, n=i + 1)


def prompt_sections(engine: str, index: int, text: str | None, segment: dict) -> list[dict[str, Any]] | None:
    """Each prompt of transition `index`'s timed prompt with the section it starts at (0-based), or
    None for a plain prompt. Refuses a malformed form, a time past the last section, two prompts in
    one section, and any timed prompt for an engine that cannot change prompts inside a transition."""
    n = index + 1
    try:
        pieces = parse(text)
    except MalformedTimedPrompt:
        raise JobError("timed_prompt_malformed", n=n, expected=EXAMPLE) from None
    if pieces is None:
        return None
    if engine in NO_TIMED_PROMPTS:
        raise JobError("engine_no_timed_prompts", engine=engine, n=n)
    sections = int(segment["sections"])
    placed: list[dict[str, Any]] = []
    for piece in pieces:
        section = section_of(piece.at, SECTION_SECONDS)
        if section >= sections:
            raise JobError(
                "timed_prompt_too_late",
                n=n,
                at=messages.num(piece.at),
                seconds=messages.num(segment["seconds"]),
                limit=messages.num(round((sections - 1) * SECTION_SECONDS, 3)),
            )
        if placed and placed[-1]["section"] == section:
            raise JobError("timed_prompt_same_section", n=n, section=section + 1)
        placed.append({"at": piece.at, "section": section, "text": piece.text})
    return placed


def plan_prompts(engine: str, params: dict, prompts: list[str | None]) -> None:
    """Checks every pair's prompt and writes each timed one's sections into its planned segment."""
    for i, segment in enumerate(params.get("segments") or []):
        placed = prompt_sections(engine, i, prompts[i] if i < len(prompts) else None, segment)
        if placed is not None:
            segment["prompt_sections"] = placed


NO_KEYFRAMES = frozenset({"morph"})  # no model to condition: a dissolve would ignore them


def keyframe_grid(engine: str, segment: dict) -> Grid:
    """The points `engine` can condition transition `segment` at."""
    if engine == "wan":
        from backend.pipeline.wan.wan_spec import NATIVE_FPS as WAN_FPS
        from backend.pipeline.wan.wan_spec import TEMPORAL_STRIDE

        return Grid(TEMPORAL_STRIDE / WAN_FPS, (int(segment["frames"]) - 1) // TEMPORAL_STRIDE)
    return Grid(SECTION_SECONDS, int(segment["sections"]))


def check_keyframes_engine(engine: str, transitions: list[int]) -> None:
    """Keyframes on an engine that cannot use them, refused before anything else (as `check_engine`)."""
    if transitions and engine in NO_KEYFRAMES:
        raise JobError("engine_no_keyframes", engine=engine, n=min(transitions) + 1)


def place_keyframes(engine: str, index: int, segment: dict, choices, exists) -> list[dict[str, Any]]:
    """Transition `index`'s keyframes (each with `.image` and `.at`) placed on the engine's grid, in
    time order, as stored in its segment. `exists(upload_id)` says whether an upload is there.
    Refuses an engine without keyframes, too many, a missing image, a transition too short to have
    a point inside, a point outside it, and two keyframes on one point."""
    n = index + 1
    if not choices:
        return []
    check_keyframes_engine(engine, [index])
    if len(choices) > MAX_PER_TRANSITION:
        raise JobError("keyframe_too_many", n=n, limit=MAX_PER_TRANSITION)
    grid = keyframe_grid(engine, segment)
    seconds = messages.num(segment["seconds"])
    if len(grid.inner) == 0:
        raise JobError(
            "keyframe_transition_too_short",
            n=n,
            seconds=seconds,
            engine=engine,
            step=messages.num(round(grid.step, 3)),
            min=messages.num(grid.seconds(2)),
        )
    placed: list[Placed] = []
    for choice in sorted(choices, key=lambda c: c.at):
        if not exists(choice.image):
            raise JobError("keyframe_image_missing", n=n, upload_id=choice.image)
        point = grid.snap(choice.at)
        if point not in grid.inner:
            raise JobError(
                "keyframe_outside",
                n=n,
                at=messages.num(choice.at),
                lands=messages.num(grid.seconds(point)),
                engine=engine,
                seconds=seconds,
                first=messages.num(grid.seconds(grid.inner[0])),
                last=messages.num(grid.seconds(grid.inner[-1])),
            )
        if placed and placed[-1].point == point:
            raise JobError(
                "keyframe_same_point",
                n=n,
                a=messages.num(placed[-1].at),
                b=messages.num(choice.at),
                lands=messages.num(grid.seconds(point)),
            )
        placed.append(Placed(choice.image, float(choice.at), point, grid.seconds(point)))
    return [p.to_dict() for p in placed]


def plan_keyframes(engine: str, params: dict, keyframes, exists) -> None:
    """Checks every keyframe of a request (`TransitionKeyframe`s) and writes each transition's into
    its planned segment; a transition without keyframes gets no key, so its parameters stay as before."""
    segments = params.get("segments") or []
    check_keyframes_engine(engine, [k.transition for k in keyframes])
    for k in keyframes:
        if k.transition >= len(segments):
            raise JobError("keyframe_no_transition", n=k.transition + 1, count=len(segments))
    for i, segment in enumerate(segments):
        placed = place_keyframes(engine, i, segment, [k for k in keyframes if k.transition == i], exists)
        if placed:
            segment["keyframes"] = placed


NO_LORAS = frozenset({"morph"})  # no model weights to apply a LoRA to


def engine_widths(settings) -> dict[str, int | None]:
    """Each engine's installed transformer width (heads × head dim), read from its config.json."""
    from backend.utils.lora_files import model_width
    from backend.utils.model_registry import wan_folder

    framepack = (
        model_width(Path(settings.framepack_dir) / "transformer" / "config.json") if settings.framepack_dir else None
    )
    return {"framepack": framepack, "wan": model_width(wan_folder(settings) / "transformer" / "config.json")}


def check_loras(settings, engine: str, choices) -> list[dict[str, Any]]:
    """The chosen LoRAs as stored with a take (`[{"name", "weight"}]`), each checked against the
    folder and the engine before anything is stored: a missing, unreadable or foreign file, or any
    LoRA on an engine without weights, is refused with its own sentence."""
    from backend.utils.lora_files import LoraProblem, inspect, resolve

    if not choices:
        return []
    if engine in NO_LORAS:
        raise JobError("engine_no_loras", engine=engine)
    names = [c.name for c in choices]
    if len(set(names)) != len(names):
        raise JobError("invalid_request", errors="loras: each LoRA may be chosen once")
    widths = engine_widths(settings)
    out = []
    for choice in choices:
        try:
            facts = inspect(resolve(settings.loras_dir, choice.name), widths)
        except LoraProblem as problem:
            raise JobError(problem.code, **problem.params) from None
        if facts.problem:
            raise JobError(facts.problem, **facts.params)
        if facts.engine != engine:
            raise JobError("lora_wrong_engine", name=choice.name, fits=facts.engine, engine=engine)
        out.append({"name": choice.name, "weight": float(choice.weight)})
    return out


def set_loras(segment: dict, loras: list[dict[str, Any]]) -> None:
    """A transition's or take's LoRAs; none leaves no key, so its parameters stay as before."""
    if loras:
        segment["loras"] = [dict(c) for c in loras]
    else:
        segment.pop("loras", None)
