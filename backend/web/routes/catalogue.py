"""GET /api/messages: the catalogue of sentences, so the page shows an error's code in its own
language (and still has the server's `detail` when a code is new to it)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.contracts import messages

router = APIRouter()


@router.get("/api/messages", response_model=dict[str, dict[str, dict[str, str]]])
async def message_catalogue():
    return {"messages": messages.CATALOGUE}
