"""The server tests: a module's tests share one real studio (`server`, uvicorn on loopback) started
with the module's `SERVER_ENV` or `server_env` fixture, and an HTTP `client` to it."""

from tests.helpers.server import client, server, server_env  # noqa: F401  (fixtures)
