"""Serving the API with uvicorn: in the foreground (`run`, for `memledger serve`) or on a free
loopback port in a background thread (`serving`, for tests and benchmarks).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from ledger import Settings
from ledger.errors import ConfigurationError

from .app import create_app

__all__ = ["LOOPBACK", "run", "serving"]

log = logging.getLogger("memledger.http")

#: Where an insecure (no-auth) server may listen.
LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: Seconds `serving` waits for the server to start, and to stop.
START_TIMEOUT_S = 20.0


def _config(settings: Settings, host: str, port: int, insecure_no_auth: bool) -> uvicorn.Config:
    if insecure_no_auth and host not in LOOPBACK:
        raise ConfigurationError(f"--insecure-no-auth serves without API keys, so it binds to loopback only, "
                                 f"not {host!r}; drop --host or use 127.0.0.1")
    app = create_app(settings, insecure_no_auth=insecure_no_auth)
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                          timeout_graceful_shutdown=2)  # open SSE streams must not hold a stop for long


def run(settings: Settings, host: str = "127.0.0.1", port: int = 8080, insecure_no_auth: bool = False) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM stop it cleanly)."""
    config = _config(settings, host, port, insecure_no_auth)
    if insecure_no_auth:
        log.warning("warning: serving WITHOUT authentication (--insecure-no-auth), bound to loopback only "
                    "(%s:%d): callers name their org in an X-Org header; for local development only", host, port)
    uvicorn.Server(config).run()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(settings: Settings, *, insecure_no_auth: bool = False, port: int | None = None) -> Iterator[str]:
    """Serve on a free loopback port in a background thread; yields the base URL, stops on exit."""
    server = uvicorn.Server(_config(settings, "127.0.0.1", port or free_port(), insecure_no_auth))
    thread = threading.Thread(target=server.run, name="memledger-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ConfigurationError("the HTTP server did not start (see the log above)")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
