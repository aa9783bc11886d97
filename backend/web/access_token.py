"""The access-token decision made before the server starts, and the banner that reports it.

Both `python -m backend` and an app uvicorn builds from its own command line
(`backend.app.settings_for_cli`) decide here, so the two starts cannot disagree.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from backend.utils.config import Settings

TOKEN_FILE_NAME = ".studio_token"


@dataclass(frozen=True)
class TokenDecision:
    token: str  # "" = the check stays off
    source: str  # "settings", "generated", "saved", "loopback", "open-lan"
    warning: str = ""


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def _saved_token(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _save_token(path: Path, token: str) -> None:
    # Kept across restarts (Docker's restart policy, a re-run cell) so open pages stay logged in;
    # readable by the owner only.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")


def decide_token(settings: Settings) -> TokenDecision:
    """A set STUDIO_TOKEN always turns the check on. Without one, a server reachable from other
    machines (a non-loopback host, or a tunnel) gets a generated token, unless the user opted out
    with STUDIO_ALLOW_OPEN_LAN for a trusted LAN; a tunnel cannot opt out, it is the internet."""
    if settings.token.strip():
        return TokenDecision(settings.token.strip(), "settings")
    exposed = settings.behind_tunnel or not is_loopback(settings.host)
    if not exposed:
        return TokenDecision("", "loopback")
    if settings.allow_open_lan and not settings.behind_tunnel:
        return TokenDecision(
            "",
            "open-lan",
            warning=(
                f"경고: 토큰 없이 {settings.host}:{settings.port} 에서 누구나 접근할 수 있습니다 "
                "(STUDIO_ALLOW_OPEN_LAN=true). / WARNING: the studio is OPEN to everyone who can "
                f"reach {settings.host}:{settings.port} (STUDIO_ALLOW_OPEN_LAN=true): no token, "
                "every job, upload and output is visible and deletable. Use this on a trusted LAN only."
            ),
        )
    token_file = settings.data_dir / TOKEN_FILE_NAME
    saved = _saved_token(token_file)
    if saved:
        return TokenDecision(saved, "saved")
    token = secrets.token_urlsafe(24)
    _save_token(token_file, token)
    return TokenDecision(token, "generated")


def banner(settings: Settings, decision: TokenDecision) -> str:
    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    lines = ["", "=" * 72, f"FramePack Video Studio: http://{shown_host}:{settings.port}/"]
    if decision.token and decision.source in ("generated", "saved"):
        lines += [
            f"접근 토큰 / Access token: {decision.token}",
            f"  (saved in {settings.data_dir / TOKEN_FILE_NAME}; set STUDIO_TOKEN to choose your own)",
        ]
    elif decision.token:
        lines.append("접근 토큰: STUDIO_TOKEN 사용 / Access token: from STUDIO_TOKEN")
    else:
        lines.append("접근 토큰 없음 (이 컴퓨터에서만 접속) / No access token (this computer only)")
    if decision.warning:
        lines += ["!" * 72, decision.warning, "!" * 72]
    lines.append("=" * 72)
    return "\n".join(lines)
