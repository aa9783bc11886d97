"""docs/api.md says what the studio sends: its WebSocket section is generated from backend/contracts/events.py
and must be current; every message type and field, every job field and status is in it; no type
is documented that nothing sends."""

from __future__ import annotations

import re

from backend.contracts import events
from backend.contracts.models import FINISHED, UNFINISHED, JobStatus, JobView
from tests.helpers.server import ROOT

DOC = ROOT / "docs" / "api.md"


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_websocket_section_is_the_one_the_models_generate():
    text = _text()
    start, end = text.index(events.BEGIN), text.index(events.END) + len(events.END)
    assert text[start:end] == events.markdown(), (
        "docs/api.md's WebSocket section is out of date: run `python -m backend.contracts.events docs/api.md`"
    )


def _documented_messages(text: str) -> dict[str, set[str]]:
    """`type` → its fields, read back from the tables of the generated section."""
    found: dict[str, set[str]] = {}
    current = None
    for line in text[text.index(events.BEGIN) : text.index(events.END)].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        if re.fullmatch(r"`[a-z.]+`", cells[0]) and cells[0] != "`type`":  # not the header row
            current = cells[0].strip("`")
            found[current] = set()
        elif current and not cells[0] and re.fullmatch(r"`\w+`", cells[1]):
            found[current].add(cells[1].strip("`"))
    return found


def test_every_message_type_and_field_is_documented():
    documented = _documented_messages(_text())
    for cls in events.ALL_MESSAGES:
        kind = events.wire_type(cls)
        assert kind in documented, f"docs/api.md does not document the {kind!r} message"
        missing = set(cls.model_fields) - {"type"} - documented[kind]
        assert not missing, f"docs/api.md misses {sorted(missing)} of {kind!r}"
    assert len(documented) == len(events.ALL_MESSAGES)


def test_no_event_is_documented_that_nothing_sends():
    sent = {events.wire_type(cls) for cls in events.ALL_MESSAGES}
    # `job.error` and the like are fields of the job an event carries, not event types.
    fields = {f"job.{name}" for name in JobView.model_fields}
    named = set(re.findall(r"`(job\.[a-z_]+)`", _text())) - fields
    assert named <= sent, f"docs/api.md names events the studio never sends: {sorted(named - sent)}"


def test_the_job_block_has_every_field_and_status():
    text = _text()
    block = text[text.index("### Job\n") :]
    block = block[block.index("```json") : block.index("```", block.index("```json") + 3)]
    for name in JobView.model_fields:
        assert f'"{name}"' in block, f"docs/api.md's Job misses the field {name!r}"
    statuses = re.search(r'"status": "([a-z|]+)"', block).group(1).split("|")
    assert statuses == [s.value for s in JobStatus]


def test_each_status_is_finished_or_unfinished_never_both():
    assert set(FINISHED) | set(UNFINISHED) == set(JobStatus)
    assert not set(FINISHED) & set(UNFINISHED)
    assert JobStatus.interrupted in UNFINISHED  # it resumes by itself: not done
