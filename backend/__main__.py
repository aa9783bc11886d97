"""`python -m backend`: start the studio.

Reads `Settings`, decides whether the access token is needed (see `decide_token`), prints how to
reach the studio, and runs uvicorn with the `backend.app:create_app` factory. Running uvicorn by
hand (`uvicorn backend.app:app --host 0.0.0.0`) makes the same decision from uvicorn's `--host`
(see `backend.app.settings_for_cli`); the set-up, Docker and Colab start through here.

`python -m backend --profile [--json]` instead prints what this machine can run (GPU, RAM, the
memory plan, the expected minutes per transition) and exits: `backend.pipeline.framepack.machine`.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from backend.utils.config import Settings
from backend.web.access_token import banner, decide_token

GRACEFUL_SHUTDOWN_S = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend", description="Start FramePack Video Studio.")
    parser.add_argument("--host", help="overrides STUDIO_HOST")
    parser.add_argument("--port", type=int, help="overrides STUDIO_PORT")
    parser.add_argument("--behind-tunnel", action="store_true", help="same as STUDIO_BEHIND_TUNNEL=true")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides: dict[str, object] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.behind_tunnel:
        overrides["behind_tunnel"] = True
    settings = Settings(**overrides) if overrides else Settings()
    decision = decide_token(settings)
    settings = settings.model_copy(update={"token": decision.token})
    print(banner(settings, decision), file=sys.stderr, flush=True)

    import uvicorn

    from backend.app import create_app
    from backend.web.connections import protocol_class

    uvicorn.run(
        partial(create_app, settings),
        factory=True,
        host=settings.host,
        port=settings.port,
        # X-Forwarded-* only from configured proxies (the tunnel agent on loopback when behind
        # one): any page a browser on this machine opens also connects from loopback, and could
        # otherwise choose the client address that the login limit counts.
        proxy_headers=bool(settings.trusted_proxy_addresses),
        forwarded_allow_ips=",".join(settings.trusted_proxy_addresses) or None,
        log_level=args.log_level,
        # SIGTERM/SIGINT: connections still open after this are closed, so a stop never waits
        # on a client (the job lanes bound their own wait, see JobQueue.stop).
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        # uvicorn's own protocol plus a time limit on each request head and a cap on connections
        # per address (STUDIO_HEADER_TIMEOUT_S, STUDIO_MAX_CONNECTIONS_PER_ADDRESS).
        http=protocol_class(settings),
    )


if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        from backend.pipeline.framepack.machine import main as profile_main

        raise SystemExit(profile_main(sys.argv[1:]))
    main()
