"""What `bench http` measures against: the API served by another process, and an agent's key.

The server runs as `memledger serve` in a child process (its own interpreter, as in
production), never in a thread of the bench: it would share the bench's GIL with the load it
is measured under. Projectors run the same way when a figure needs them. Children inherit
the bench's settings through MEMLEDGER_* variables and are stopped (SIGTERM, then SIGKILL)
whatever happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from ledger import Settings
from ledger.errors import ConfigurationError
from memledger.app import App

__all__ = ["ORG", "HttpEnv", "child_env", "projector", "served"]

#: The org every HTTP figure writes and reads.
ORG = "bench-org"
#: Seconds a child may take to start answering, and to stop.
START_S, STOP_S = 60.0, 10.0


@dataclass
class HttpEnv:
    """The served API and its in-process twin, on one namespace."""

    url: str
    key: str  # an agent key of ORG (any agent)
    app: App  # the App that key gets in-process: the path every HTTP write ends in
    settings: Settings


def child_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a `memledger` child process these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        env[f"MEMLEDGER_{name.upper()}"] = text
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _child(settings: Settings, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-m", "memledger", *args], env=child_env(settings),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()


def _wait_ready(url: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            error = child.stderr.read().decode(errors="replace")[-2000:] if child.stderr else ""
            raise ConfigurationError(f"`memledger serve` exited with {child.returncode}: {error}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=2).status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ConfigurationError(f"`memledger serve` did not answer within {START_S:.0f} s")


@contextmanager
def served(settings: Settings) -> Iterator[HttpEnv]:
    """Migrate, issue an agent key, serve the API in a child process; yields where it is."""
    with App.open(settings, system=True) as system:
        system.migrate()
        issued = system.issue_key(ORG, "agent", label="bench http")
        with App.for_principal(settings, system.authenticate(issued.secret)) as app:
            port = _free_port()
            with _child(settings, "serve", "--port", str(port)) as child:
                url = f"http://127.0.0.1:{port}"
                _wait_ready(url, child)
                yield HttpEnv(url, issued.secret, app, settings)


@contextmanager
def projector(settings: Settings, name: str) -> Iterator[None]:
    """Projection `name` running in a child process while the block runs."""
    with _child(settings, "projector", "run", "-p", name):
        yield
