"""The `api` fixture: the HTTP API served by uvicorn on a free loopback port, on the test's namespace.

    def test_x(api: Api) -> None:
        key = api.key("acme", "agent", agent="bot")
        with api.client(key) as http:
            http.post("/v1/memories", json={"content": "likes tea"})
        api.project()                       # run the projectors until caught up

Import it in a test module with `from http_server import Api, api  # noqa: F401` (conftest is
shared by every test, this fixture only by the HTTP tests).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from ledger import Settings
from memledger.app import App
from memledger.http import serving

__all__ = ["Api", "api", "open_api"]

#: The projections HTTP reads need, in the order `project` runs them.
READ_MODELS = ("archive", "memories", "trending", "analytics", "activity")


@dataclass
class Api:
    url: str
    settings: Settings
    system: App  # unscoped, system: issues keys, runs projectors, looks behind the API in assertions
    keys: dict[tuple[str, str, str | None], str] = field(default_factory=dict)

    def key(self, org: str, role: str = "agent", agent: str | None = None) -> str:
        """A key's secret (issued once per org, role and agent)."""
        if (org, role, agent) not in self.keys:
            self.keys[(org, role, agent)] = self.system.issue_key(org, role, agent).secret
        return self.keys[(org, role, agent)]

    @contextmanager
    def client(self, key: str | None = None, **headers: str) -> Iterator[httpx.Client]:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=30) as http:
            yield http

    def project(self, names: tuple[str, ...] = READ_MODELS) -> None:
        """Run each projector until it has applied everything appended so far."""
        for name in names:
            self.system.run_projector(name, until_caught_up=True)

    @contextmanager
    def projecting(self, names: tuple[str, ...] = READ_MODELS) -> Iterator[None]:
        """Run the projectors in background threads (one App each) while the block runs."""
        stop = threading.Event()

        def run(name: str) -> None:
            with App.open(self.settings) as own:
                own.run_projector(name, stop=stop)

        threads = [threading.Thread(target=run, args=(n,), name=f"projector-{n}") for n in names]
        for t in threads:
            t.start()
        try:
            yield
        finally:
            stop.set()
            for t in threads:
                t.join(30)


@contextmanager
def open_api(settings: Settings, insecure_no_auth: bool = False) -> Iterator[Api]:
    with App.open(settings, system=True) as system:
        system.migrate()
        with serving(settings, insecure_no_auth=insecure_no_auth) as url:
            yield Api(url, settings, system)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with open_api(settings) as served:
        yield served
