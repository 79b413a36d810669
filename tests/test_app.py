"""The application API (memledger/app.py) against the real servers: every audience's operations,
tenant scoping, and the never-migrated namespace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from commands import ExpireMemory, StoreMemory, UpdateMemory
from ledger import Receipt, Settings
from ledger.errors import CommandError, ConfigurationError, InvalidQuery, Timeout
from memledger.app import App, NotPermitted
from memledger.log_reader import EventFilter
from projections import MemoryQuery, NotFound

ORG, OTHER = "acme", "globex"


@pytest.fixture
def migrated(settings: Settings) -> Settings:
    with App.open(settings) as app:
        app.migrate()
    return settings


@pytest.fixture
def app(migrated: Settings) -> Iterator[App]:
    with App.open(migrated) as app:
        yield app


def store(memory_id: str, org: str = ORG, agent: str = "a1", **extra: object) -> StoreMemory:
    return StoreMemory(org_id=org, agent_id=agent, memory_id=memory_id, content=f"about {memory_id}",
                       tags=("food",), **extra)


def project(app: App) -> None:
    for name in ("archive", "memories"):
        app.run_projector(name, until_caught_up=True)


def ledger_length(settings: Settings) -> int:
    with App.open(settings) as app:
        return sum(p.length for p in app.info().partitions)


# -- agents and analysts --------------------------------------------------------------------------


def test_send_wait_for_query_get_history(app: App) -> None:
    # Given a stored memory, updated once
    first = app.send(store("m1"))
    second = app.send(UpdateMemory(org_id=ORG, agent_id="a1", memory_id="m1", importance=0.9))
    assert isinstance(first, Receipt) and second.subject_version == 2
    # When the projector has applied it (wait_for: read-your-writes)
    with pytest.raises(Timeout):
        app.wait_for(second, timeout=0.05)
    project(app)
    app.wait_for(second, timeout=5)
    # Then every read sees it
    assert [r["memory_id"] for r in app.query(MemoryQuery(ORG, tags=("food",))).rows] == ["m1"]
    assert app.get(ORG, "m1")["importance"] == pytest.approx(0.9)
    assert [h.event.type for h in app.history(ORG, "m1")] == ["MemoryStored", "MemoryUpdated"]
    view = app.memory(ORG, "m1", with_history=True)
    assert view.memory is not None and len(view.history) == 2
    assert [s["agent_id"] for s in app.stats(ORG)] == ["a1"]


def test_send_many_gives_one_outcome_each(app: App) -> None:
    outcomes = app.send_many([store("m1"), {"type": "StoreMemory", "org_id": ORG}, store("m1")])
    assert [type(o).__name__ for o in outcomes] == ["Receipt", "InvalidCommand", "SubjectExists"]


def test_as_of_and_get_as_of_read_history(app: App) -> None:
    app.send(store("m1", importance=0.2))
    project(app)
    between = datetime.now(timezone.utc)
    time.sleep(0.01)
    app.send(UpdateMemory(org_id=ORG, agent_id="a1", memory_id="m1", importance=0.8))
    project(app)
    assert app.get(ORG, "m1", as_of=between)["importance"] == pytest.approx(0.2)
    assert app.get(ORG, "m1")["importance"] == pytest.approx(0.8)
    assert [r["importance"] for r in app.as_of(ORG, "a1", between)] == [pytest.approx(0.2)]
    with pytest.raises(NotFound):
        app.get(ORG, "m1", as_of=datetime(2001, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(InvalidQuery):
        app.as_of(ORG, None, between)


def test_system_only_commands_need_a_system_app(migrated: Settings) -> None:
    due = datetime(2026, 1, 1, tzinfo=timezone.utc)
    expire = ExpireMemory(org_id=ORG, agent_id="a1", memory_id="m1", expires_at=due)
    with App.open(migrated) as agent_app:
        agent_app.send(store("m1", expires_at=due))
        [refused] = agent_app.send_many([expire])
        assert isinstance(refused, CommandError) and refused.code == "system_only"
    with App.open(migrated, system=True) as system_app:
        [accepted] = system_app.send_many([expire])
        assert isinstance(accepted, Receipt)


def test_log_reads(app: App) -> None:
    app.send_many([store("m1"), store("m2", agent="a2"), store("m3", org=OTHER)])
    everything = app.events(EventFilter())
    assert len(everything) == 3
    assert [r.event.subject_id for r in app.events(EventFilter(org=OTHER))] == ["m3"]
    filt = EventFilter(types=frozenset({"MemoryStored"}))
    heads = app.heads(filt)
    assert app.tail(filt, heads, limit=2) == everything[-2:]


# -- operators ---------------------------------------------------------------------------------------


def test_health_info_lag_and_replay(app: App, migrated: Settings) -> None:
    app.send_many([store(f"m{i}") for i in range(5)])
    health = app.health()
    assert health.ok and health.redis.latency_ms is not None and health.migrated is True
    info = app.info()
    assert info.namespace == migrated.namespace and sum(p.length for p in info.partitions) == 5
    assert sum(x.behind for x in app.lag() if x.projection == "memories") == 5
    for name in ("archive", "memories", "api_keys", "trending", "analytics", "activity", "conversations",
                 "recent_messages"):
        app.run_projector(name, until_caught_up=True)
    assert sum(x.behind for x in app.lag()) == 0
    assert {(r.state, r.lag) for r in app.replay_status(["memories"])} == {("live", 0)}
    assert app.verify("memories").agree
    assert app.dead_letters() == []


def test_trending_analytics_feed(app: App) -> None:
    app.send(store("m1"))
    for name in ("memories", "trending", "analytics", "activity"):
        app.run_projector(name, until_caught_up=True)
    assert [tag for tag, _ in app.trending(ORG, hours=2).tags] == ["food"]
    today = datetime.now(timezone.utc).date()
    assert app.analytics(ORG, today, today).events == {"MemoryStored": 1}
    assert [e["subject"] for e in app.feed(ORG, "a1")] == ["m1"]


# -- tenancy --------------------------------------------------------------------------------------------


def test_a_scoped_app_never_sees_or_changes_another_orgs_data(migrated: Settings) -> None:
    # Given a memory of each org
    with App.open(migrated) as operator:
        operator.send_many([store("ours"), store("theirs", org=OTHER)])
        project(operator)
    before = ledger_length(migrated)
    with App.open(migrated, tenant=ORG) as scoped:
        # Then the other org's memory reads as not found, however it is asked for
        with pytest.raises(NotFound):
            scoped.get(OTHER, "theirs")
        with pytest.raises(NotFound):
            scoped.get(ORG, "theirs")
        with pytest.raises(NotFound):
            scoped.query(MemoryQuery(OTHER))
        with pytest.raises(NotFound):
            scoped.history(OTHER, "theirs")
        assert scoped.history(ORG, "theirs") == []
        assert [r["memory_id"] for r in scoped.query(MemoryQuery(ORG)).rows] == ["ours"]
        assert {r.event.org_id for r in scoped.events(EventFilter())} == {ORG}
        # And a write to it is refused and appends nothing
        [refused] = scoped.send_many([UpdateMemory(org_id=OTHER, agent_id="a1", memory_id="theirs", importance=1)])
        assert isinstance(refused, CommandError) and refused.code == "unauthorized"
        with pytest.raises(CommandError):
            scoped.send(store("new", org=OTHER))
        # And namespace-wide operations are not its to run
        for operation in (scoped.lag, scoped.info, scoped.replay_status, scoped.servers):
            with pytest.raises(NotPermitted):
                operation()
    assert ledger_length(migrated) == before


def test_an_agent_scoped_app_stays_within_its_agent(migrated: Settings) -> None:
    with App.open(migrated) as operator:
        operator.send_many([store("mine", agent="a1"), store("yours", agent="a2")])
        project(operator)
    before = ledger_length(migrated)
    with App.open(migrated, tenant=ORG, agent="a1") as scoped:
        assert [r["memory_id"] for r in scoped.query(MemoryQuery(ORG)).rows] == ["mine"]
        with pytest.raises(NotFound):
            scoped.get(ORG, "yours")
        with pytest.raises(NotFound):
            scoped.query(MemoryQuery(ORG, agent_id="a2"))
        [refused] = scoped.send_many([UpdateMemory(org_id=ORG, agent_id="a2", memory_id="yours", importance=1)])
        assert isinstance(refused, CommandError) and refused.code == "unauthorized"
        assert [s["agent_id"] for s in scoped.stats(ORG)] == ["a1"]
    assert ledger_length(migrated) == before


# -- a namespace never migrated ----------------------------------------------------------------------


def test_a_never_migrated_namespace_is_one_configuration_error(settings: Settings) -> None:
    session = {"type": "IngestSession", "org_id": ORG, "agent_id": "a1",
               "transcript": [{"role": "user", "content": "hi"}]}
    with App.open(settings) as app:
        for read in (lambda: app.query(MemoryQuery(ORG)), lambda: app.get(ORG, "m1"), app.lag, app.replay_status,
                     app.processing_status, lambda: app.ingest_many([session])):
            with pytest.raises(ConfigurationError, match="run `memledger migrate`"):
                read()
        assert app.health().migrated is False
    assert ledger_length(settings) == 0  # the ingest was refused before appending


def test_health_reports_an_unreachable_postgresql_in_the_drivers_words(settings: Settings) -> None:
    nowhere = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/test"})
    with App.open(nowhere) as app:
        health = app.health()
    assert health.redis.ok and not health.postgresql.ok and health.migrated is None and not health.ok
    # The detail is the driver's own first line (the probe's ok=False already says "unreachable")
    assert "127.0.0.1" in health.postgresql.detail and not health.postgresql.detail.startswith("PostgreSQL is")
