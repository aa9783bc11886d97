"""The login routes: `GET /api/auth` (is a token needed, and is this client in?), `POST /api/login`
(token → session cookie) and `POST /api/logout` (the session ends on the server too).

These paths are open in the middleware (`backend.web.request_info.is_open`) and do their own
checking and rate limiting, through the `AuthGuard` that `install_auth` leaves on `app.state.auth`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from backend.contracts.errors import StudioError
from backend.web import error_responses as errors
from backend.web.access_policy import COOKIE_MAX_AGE_S, AuthGuard, FailureLimiter
from backend.web.request_info import COOKIE_NAME, credentials

router = APIRouter()


class LoginRequest(BaseModel):
    token: str = ""


def _guard(request: Request) -> AuthGuard:
    guard = getattr(request.app.state, "auth", None)
    if guard is None:  # install_auth was not called: behave as "no token configured"
        return AuthGuard("", FailureLimiter(), frozenset())
    return guard


def _is_https(request: Request) -> bool:
    # Behind ngrok/a proxy uvicorn's proxy_headers turns X-Forwarded-Proto into the scheme.
    return request.url.scheme in ("https", "wss")


def _limited_response(guard: AuthGuard, request: Request) -> JSONResponse | None:
    limited = guard.limited(request.scope)
    if limited is None:
        return None
    error, extra = limited
    return errors.response(error, headers={k.decode(): v.decode() for k, v in extra})


@router.get("/api/auth", response_model=dict[str, bool])
async def auth_status(request: Request):
    """Lets the page decide whether to ask for the token before calling anything else."""
    guard = _guard(request)
    if not guard.enabled:
        return {"required": False, "authenticated": True}
    refused = _limited_response(guard, request)
    if refused is not None:
        return refused
    cookie = request.cookies.get(COOKIE_NAME)
    bearer = credentials(request.scope).bearer
    authenticated = guard.check(bearer) or guard.check(cookie, is_cookie=True)
    if bearer and not guard.check(bearer):
        # This route is open, so it must count wrong tokens like every closed one does.
        guard.limiter.record_failure(guard.client(request.scope))
    return {"required": True, "authenticated": authenticated}


@router.post("/api/login")
async def login(body: LoginRequest, request: Request) -> JSONResponse:
    guard = _guard(request)
    if not guard.enabled:
        return JSONResponse({"required": False, "authenticated": True})
    client = guard.client(request.scope)
    refused = _limited_response(guard, request)
    if refused is not None:
        return refused
    if not guard.check(body.token.strip()):
        guard.limiter.record_failure(client)
        return errors.response(StudioError("token_wrong"))
    guard.limiter.reset(client)
    response = JSONResponse({"required": True, "authenticated": True})
    response.set_cookie(
        COOKIE_NAME,
        guard.sessions.create(),
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
        path="/",
    )
    return response


@router.post("/api/logout")
async def logout(request: Request) -> JSONResponse:
    guard = _guard(request)
    # Ends the session on the server too: a copy of the cookie kept anywhere stops working.
    guard.sessions.revoke(request.cookies.get(COOKIE_NAME))
    response = JSONResponse({"required": guard.enabled, "authenticated": False})
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response
