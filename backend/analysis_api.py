"""POST /api/analyze (issue 7 fills this in)."""

from fastapi import APIRouter

router = APIRouter()
