"""The page tests: Debian's Chromium (`browser`, one context per module) against a real studio
(`server`, one per module, started with the module's `SERVER_ENV` or `server_env` fixture)."""

import pytest

from tests.helpers.browser import chromium_context
from tests.helpers.server import client, server, server_env  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def browser(request, tmp_path_factory):
    name = request.module.__name__.rsplit(".", 1)[-1]
    with chromium_context(tmp_path_factory.mktemp(f"chromium-profile-{name}")) as context:
        yield context
