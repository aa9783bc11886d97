"""/openapi.json as the studio really answers, and `Allow` headers that list every method of a path.

FastAPI documents its own validation error shape (a list) and nothing of what the access-control
middleware answers; the studio answers every error as `{"detail": "<sentence>", "code", "params"}`
(`ErrorBody`, backend/web/error_responses.py) and
the middleware may answer any API route 400 (unknown Host), 401 (no token), 403 (foreign origin)
or 429 (too many failed logins). The document is rewritten once to say so.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.contracts import events
from backend.contracts.models import ErrorBody
from backend.utils.config import Settings

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
# What the access-control middleware may answer on any route, and why.
MIDDLEWARE_ERRORS = {
    "400": "the Host header is not one the studio is served as",
    "401": "the access token is missing or wrong",
    "403": "the request comes from a page of another origin",
    "429": "too many failed token attempts from this client: wait Retry-After seconds",
}
METHODS = ("get", "put", "post", "delete", "patch", "options", "head")


def _error_response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _array(schema: dict) -> dict:
    """The array branch of a property (`list | None` is an anyOf)."""
    return next((s for s in schema.get("anyOf", []) if s.get("type") == "array"), schema)


def _number(schema: dict) -> dict:
    return next((s for s in schema.get("anyOf", []) if s.get("type") in ("number", "integer")), schema)


def _running_limits(schemas: dict, settings: Settings) -> None:
    """The limits of this server (settings, not constants of the models) written into the request
    schemas, so that what the document calls valid is what the server accepts."""
    images = settings.max_images_per_job
    for name in ("JobCreate", "ParamsPreview"):
        _array(schemas[name]["properties"]["images"])["maxItems"] = images
    analyzed = schemas["AnalyzeRequest"]["properties"]["images"]
    analyzed.update(minItems=1, maxItems=images)
    analyzed["items"] = {"type": "string", "pattern": UPLOAD_ID_PATTERN}
    sliders = schemas["JobSettings"]["properties"]
    _number(sliders["seconds"])["maximum"] = settings.max_seconds_per_transition
    _number(sliders["takes_per_transition"])["maximum"] = settings.max_takes_per_transition


# What an upload id can look like (backend/web/routes/analysis.py refuses anything else with 400).
UPLOAD_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"


def _rewrite(doc: dict, settings: Settings | None = None) -> dict:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            responses = op.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = _error_response("the request does not match this schema")
            if "requestBody" in op:
                responses.setdefault("413", _error_response("the request body is too large"))
            if path.startswith("/api/"):
                for code, why in MIDDLEWARE_ERRORS.items():
                    responses.setdefault(code, _error_response(why))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    messages, sockets = events.openapi_components()
    for name, schema in messages.items():
        schemas.setdefault(name, schema)
    doc["x-websockets"] = sockets
    if settings is not None:
        _running_limits(schemas, settings)
    return doc


class AllowHeader:
    """Answers 405 with every method of the path in `Allow`, as the document lists them: the router
    names only those of the first route that matched, and a path's GET and DELETE are two routes."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        self._paths: list[tuple[re.Pattern, str]] | None = None

    def _allowed(self, path: str) -> str | None:
        if self._paths is None:
            doc = self.fastapi_app.openapi()
            self._paths = []
            for template, item in doc.get("paths", {}).items():
                pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
                methods = ", ".join(sorted(m.upper() for m in item if m in METHODS))
                self._paths.append((re.compile(f"^{pattern}$"), methods))
        for pattern, methods in self._paths:
            if pattern.match(path):
                return methods
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 405:
                allowed = self._allowed(scope.get("path", ""))
                if allowed:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": headers + [(b"allow", allowed.encode())]}
            await send(message)

        await self.app(scope, receive, wrapped)


def install(app: FastAPI, settings: Settings | None = None) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = _rewrite(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    description=app.description,
                    routes=app.routes,
                ),
                settings,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(AllowHeader, fastapi_app=app)
