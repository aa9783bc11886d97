"""Every message the studio sends over its WebSockets: one class per `type`.

The job queue and the runner build these and hand them to `WebSocketManager.publish`; the monitor
socket sends the two `/ws/monitor` ones. A field is declared once here, with the sentence that
documents it: the WebSocket section of docs/api.md is generated from these classes
(`python -m backend.contracts.events docs/api.md` rewrites it; a test fails while it is out of date).

Field order is the order on the wire. Job events end with `ts`, the server clock (seconds) where
the event was made: on the worker thread for progress, on the event loop for the others.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.contracts.models import ExportView, JobView

# The default sits on each field, not in `Stamp`: mypy's pydantic plugin reads a default only there,
# and would call every event built without `ts` a missing argument.
Stamp = Annotated[float, Field(description="server clock (seconds) when it was made")]
JobId = Annotated[str, Field(description="the job it is about")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str


# --- /ws: the job list ------------------------------------------------------------------------
class SnapshotMessage(_Message):
    """Sent first on every connection: what is not finished now; events follow on top of it."""

    type: Literal["snapshot"] = "snapshot"
    jobs: list[JobView] = Field(description="every job not finished (queued, running, interrupted)")


class JobChangeEvent(_Message):
    job_id: JobId
    job: JobView = Field(description="the job as `GET /api/jobs/<id>` shows it now")
    ts: Stamp = Field(default_factory=time.time)


class JobQueuedEvent(JobChangeEvent):
    """Submitted, or queued again by a retry."""

    type: Literal["job.queued"] = "job.queued"


class JobStartedEvent(JobChangeEvent):
    """A lane took the job (also when it resumes after a restart)."""

    type: Literal["job.started"] = "job.started"


class JobCompletedEvent(JobChangeEvent):
    """The final video is written; `job.video_url` names it."""

    type: Literal["job.completed"] = "job.completed"


class JobFailedEvent(JobChangeEvent):
    """`job.error` is the sentence to show, `job.details` the technical cause."""

    type: Literal["job.failed"] = "job.failed"


class JobCancelledEvent(JobChangeEvent):
    """Cancelled by the user: a queued job at once, a running one within one denoising step."""

    type: Literal["job.cancelled"] = "job.cancelled"


class JobTakesEvent(JobChangeEvent):
    """A take was chosen or deleted (the job's status is unchanged; a re-roll or a rebuild is `job.queued`)."""

    type: Literal["job.takes"] = "job.takes"


class JobMovedEvent(JobChangeEvent):
    """Its place in the queue changed (`job.position`): a move, its own or a neighbour's."""

    type: Literal["job.moved"] = "job.moved"


class JobEditedEvent(JobChangeEvent):
    """A queued job's request was changed before it started (`PATCH /api/jobs/<id>`)."""

    type: Literal["job.edited"] = "job.edited"


class JobDeletedEvent(_Message):
    """The job and its outputs are gone (uploads stay)."""

    type: Literal["job.deleted"] = "job.deleted"
    job_id: JobId
    ts: Stamp = Field(default_factory=time.time)


class JobProgressEvent(_Message):
    """Sent at most every 0.1 s per job, and at once when the stage, segment or section changes."""

    type: Literal["job.progress"] = "job.progress"
    job_id: JobId
    stage: str = Field(
        description="what runs now: load, generate, join, face_restore, upscale, interpolate, encode, ..."
    )
    progress: float = Field(description="the whole job, 0..1")
    eta_s: float | None = Field(description="seconds left, from the pace since this run started; null until 1% is done")
    elapsed_s: float = Field(description="seconds since this run of the job started")
    message: str = Field(description="the stage's own words, may be empty")
    segment: int | None = Field(description="1-based transition being generated; null outside generation")
    segments: int = Field(description="transitions in the job")
    section: int | None = Field(description="1-based FramePack section, null when the engine has none")
    sections: int | None = Field(description="sections in this transition")
    step: int | None = Field(description="denoising step (morph: frame) within the section")
    steps: int | None = Field(description="steps in the section (morph: frames in the transition)")
    running: list[int] | None = Field(
        None, description="1-based transitions generating now: several when a Ray pool runs them in parallel"
    )
    worker: str | None = Field(None, description="the Ray worker this report came from; null in the embedded studio")
    ts: Stamp = Field(default_factory=time.time)


class JobPreviewEvent(_Message):
    """A new preview file. FramePack sections come out end-first: the preview grows backwards
    from the end of the transition."""

    type: Literal["job.preview"] = "job.preview"
    job_id: JobId
    segment: int = Field(description="1-based transition")
    section: int = Field(
        description="the section it was made at (the transition's section count once the "
        "transition is done; 0 from an engine without sections)"
    )
    url: str | None = Field(description="the preview's /files/outputs/... URL")
    ts: Stamp = Field(default_factory=time.time)


class JobWarningEvent(_Message):
    """Something the user should know that does not stop the job; also kept in `job.warnings`."""

    type: Literal["job.warning"] = "job.warning"
    job_id: JobId
    message: str = Field(description="in English and Korean")
    ts: Stamp = Field(default_factory=time.time)


class JobSegmentEvent(_Message):
    """A transition is finished and written as its own file."""

    type: Literal["job.segment"] = "job.segment"
    job_id: JobId
    segment: int = Field(description="1-based transition")
    segments: int = Field(description="transitions in the job")
    url: str | None = Field(description="the segment's /files/outputs/... URL")
    take: int | None = Field(None, description="the take of that transition just made (1-based)")
    overall: float | None = Field(None, description="that take's overall score, 0..100")
    ts: Stamp = Field(default_factory=time.time)


class JobExportEvent(_Message):
    """An export of the job (`POST /api/jobs/<id>/exports`) was queued, made progress (at most every
    0.2 s), is done (`export.url` names the file) or failed (`export.error`)."""

    type: Literal["job.export"] = "job.export"
    job_id: JobId
    export: ExportView = Field(description="the export as `GET /api/jobs/<id>/exports/<export_id>` shows it now")
    ts: Stamp = Field(default_factory=time.time)


JobEvent = Annotated[
    JobQueuedEvent
    | JobStartedEvent
    | JobCompletedEvent
    | JobFailedEvent
    | JobCancelledEvent
    | JobTakesEvent
    | JobMovedEvent
    | JobEditedEvent
    | JobDeletedEvent
    | JobProgressEvent
    | JobPreviewEvent
    | JobWarningEvent
    | JobSegmentEvent
    | JobExportEvent,
    Field(discriminator="type"),
]
JobsMessage = Annotated[SnapshotMessage | JobEvent, Field(discriminator="type")]


# --- /ws/monitor: the machine -----------------------------------------------------------------
class MonitorHistoryMessage(_Message):
    """Sent first: the samples of the last STUDIO_MONITOR_HISTORY_S, so charts draw at once."""

    type: Literal["history"] = "history"
    interval_s: float = Field(description="seconds between samples")
    samples: list[dict[str, Any]] = Field(description="oldest first, each as `GET /api/system` answers")


class MonitorSampleMessage(_Message):
    """One new sample, about every `interval_s`."""

    type: Literal["sample"] = "sample"
    sample: dict[str, Any] = Field(description="as `GET /api/system` answers (without `interval_s`)")


MonitorMessage = Annotated[MonitorHistoryMessage | MonitorSampleMessage, Field(discriminator="type")]

# The order the documentation lists them in, per socket.
JOB_SOCKET = (
    SnapshotMessage,
    JobQueuedEvent,
    JobStartedEvent,
    JobCompletedEvent,
    JobFailedEvent,
    JobCancelledEvent,
    JobTakesEvent,
    JobMovedEvent,
    JobEditedEvent,
    JobDeletedEvent,
    JobProgressEvent,
    JobPreviewEvent,
    JobWarningEvent,
    JobSegmentEvent,
    JobExportEvent,
)
MONITOR_SOCKET = (MonitorHistoryMessage, MonitorSampleMessage)
ALL_MESSAGES = JOB_SOCKET + MONITOR_SOCKET


def wire_type(cls: type[_Message]) -> str:
    return cls.model_fields["type"].default


def _json_type(prop: dict) -> str:
    """A property of a JSON schema in a few words: `number or null`, `array of Job`."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return "Job" if name == "JobView" else name
    if "anyOf" in prop:
        return " or ".join(_json_type(p) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"array of {_json_type(prop.get('items', {}))}"
    return kind


def openapi_components() -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """(schemas of every message, for /openapi.json's components; the messages of each socket
    path as references): OpenAPI has no words for WebSockets, so the paths go under an `x-` key."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema(
        [(cls, "serialization") for cls in ALL_MESSAGES], ref_template="#/components/schemas/{model}"
    )
    ref = "#/components/schemas/{}".format
    sockets = {
        "/ws": [{"$ref": ref(c.__name__)} for c in JOB_SOCKET],
        "/ws/monitor": [{"$ref": ref(c.__name__)} for c in MONITOR_SOCKET],
    }
    return top.get("$defs", {}), sockets


# --- docs/api.md ------------------------------------------------------------------------------
BEGIN = (
    "<!-- websocket messages: generated by `python -m backend.contracts.events docs/api.md`; do not edit by hand -->"
)
END = "<!-- end of websocket messages -->"


def _section(title: str, classes: tuple[type[_Message], ...]) -> list[str]:
    lines = [f"### {title}", "", "| `type` | field | JSON type | meaning |", "|---|---|---|---|"]
    for cls in classes:
        doc = " ".join((cls.__doc__ or "").split())
        lines.append(f"| `{wire_type(cls)}` | | | {doc} |")
        props = cls.model_json_schema(mode="serialization")["properties"]
        for name, field in cls.model_fields.items():
            if name != "type":
                lines.append(f"| | `{name}` | {_json_type(props[name])} | {field.description or ''} |")
    return lines + [""]


def markdown() -> str:
    """The generated part of docs/api.md, between its markers."""
    lines = [BEGIN, ""]
    lines += _section("`/ws` — the job list", JOB_SOCKET)
    lines += _section("`/ws/monitor` — the machine", MONITOR_SOCKET)
    return "\n".join(lines) + END


def rewrite(path: Path) -> bool:
    """Puts the current section into the file between its markers; True when the text changed."""
    text = path.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + markdown() + text[end:]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/api.md")
    print(f"{target}: {'updated' if rewrite(target) else 'already current'}")
