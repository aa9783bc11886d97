"""Access control (issue 4 fills this in)."""

from fastapi import APIRouter, FastAPI

from backend.config import Settings

router = APIRouter()


def install_auth(app: FastAPI, settings: Settings) -> None:
    """Adds the token check to every route, file and WebSocket of `app`."""
