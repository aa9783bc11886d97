"""GET /api/system and WS /ws/monitor (issue 3 fills this in)."""

from fastapi import APIRouter

router = APIRouter()
