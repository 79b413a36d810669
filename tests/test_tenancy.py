"""Tenancy of the background processing, on the real Redis and PostgreSQL.

- Only the system's own components send the internal commands (SummarizeSession,
  MarkSessionFailed, RetrySession, ExpireMemory, PurgeTranscript): an agent's bus refuses
  them and appends nothing.
- A retry of org B that names org A's ingest event never extracts org A's transcript into
  org B: the worker reads the named event only if it is of the job's own org and agent,
  from the stream and from the archive alike, and fails the job for good otherwise.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
import redis
from dramatiq import Message as DramatiqMessage

from commands import (
    Command,
    CommandBus,
    ExpireMemory,
    IngestSession,
    MarkSessionFailed,
    PurgeTranscript,
    RetrySession,
    StoreMemory,
    SummarizeSession,
    Unauthorized,
    open_bus,
)
from ledger import Settings, open_log
from ledger import events as ev
from ledger.connections import database_url
from ledger.events import Message, RecordedEvent
from ledger.log import Receipt
from ledger.partitions import partition_for
from projections import run_projection
from projections.postgres import migrate
from projections.postgres.base import connect
from workers.broker import SESSIONS_QUEUE, WorkerKeys
from workers.enqueuer import run_enqueuer
from workers.extract import KeywordExtractor
from workers.jobs import Job
from workers.process import ArchiveReader, PermanentFailure, SessionProcessor

from test_workers_e2e import TIMEOUT_S, Watcher, fast, workers  # noqa: F401 - `workers` is a fixture

ORG_A, AGENT_A, ORG_B = "org-a", "agent-a", "org-b"
SESSION = "ses-shared"  # org B reuses org A's session id, so only the org tells them apart
SECRET = "nightjar"
SECRET_TRANSCRIPT = (
    Message(role="user", content=f"Hi. My vault code is {SECRET}-7431. I prefer {SECRET} reports over email."),
    Message(role="assistant", content=f"Noted. We decided to acquire Initrode under codename {SECRET}."),
)
OWN_TRANSCRIPT = (Message(role="user", content="Hello. My team is 4 engineers."),)
INTERNAL = ("SummarizeSession", "MarkSessionFailed", "RetrySession", "ExpireMemory", "PurgeTranscript")


def agent_b(partitions: int, same_partition: bool) -> str:
    """An agent of org B whose partition is (or is not) org A's agent's."""
    target = partition_for(ORG_A, AGENT_A, partitions)
    return next(name for i in range(1000) if (name := f"agent-b{i}")
                and (partition_for(ORG_B, name, partitions) == target) == same_partition)


@dataclass
class Attack:
    settings: Settings
    agent_b: str
    a_ingest: Receipt
    retry: Receipt


def _org_events(settings: Settings, org_id: str) -> list[RecordedEvent]:
    log = open_log(settings)
    return [r for p in range(log.partitions) for r in log.iter_partition(p) if r.event.org_id == org_id]


def _mentions_secret(record: RecordedEvent) -> bool:
    return SECRET in record.event.model_dump_json().lower()


def _ingest(bus: CommandBus, org_id: str, agent_id: str, transcript: tuple[Message, ...]) -> Receipt:
    return bus.send(IngestSession(org_id=org_id, agent_id=agent_id, session_id=SESSION, transcript=transcript))


def _attack(settings: Settings, same_partition: bool) -> Attack:
    """Org A ingests a session; org B, with a session of the same id, asks to retry it from A's event."""
    migrate.upgrade(settings)
    b = agent_b(settings.partitions, same_partition)
    a_ingest = _ingest(open_bus(settings, tenant=ORG_A), ORG_A, AGENT_A, SECRET_TRANSCRIPT)
    time.sleep(0.01)  # B's ingest gets a later stream id: B's partition has nothing at A's position
    _ingest(open_bus(settings, tenant=ORG_B), ORG_B, b, OWN_TRANSCRIPT)
    # RetrySession is internal (an agent's bus refuses it); a system bus limited to org B reaches the worker
    retry = open_bus(settings, tenant=ORG_B, system=True).send(RetrySession(
        org_id=ORG_B, agent_id=b, session_id=SESSION, ingest_event_id=UUID(a_ingest.event_ids[0]),
        ingest_stream_id=a_ingest.stream_id, reason="copy org A's session"))
    run_projection(settings, "archive", until_caught_up=True)  # so the worker could also find A's event there
    return Attack(settings, b, a_ingest, retry)


def _queued_jobs(settings: Settings, client: redis.Redis) -> list[Job]:
    raw = client.hgetall(f"{WorkerKeys(settings.namespace).queue(SESSIONS_QUEUE)}.msgs")
    return [Job.from_kwargs(DramatiqMessage.decode(data if isinstance(data, bytes) else data.encode()).kwargs)
            for data in raw.values()]


def _assert_nothing_of_org_a_in_org_b(attack: Attack, conn: psycopg.Connection[Any]) -> None:
    events = _org_events(attack.settings, ORG_B)
    assert [r.event.type for r in events] == ["SessionIngested", "SessionRetryRequested", "SessionExtractionFailed"]
    assert not any(_mentions_secret(r) for r in events)
    run_projection(attack.settings, "memories", until_caught_up=True)
    assert conn.execute("SELECT count(*) FROM memories WHERE org_id = %s", (ORG_B,)).fetchone() == (0,)
    row = conn.execute("SELECT status, transcript::text, error FROM sessions WHERE org_id = %s AND session_id = %s",
                       (ORG_B, SESSION)).fetchone()
    assert row is not None and row[0] == "failed" and SECRET not in row[1] and SECRET not in row[2]
    # ... and org A's session is untouched
    assert [r.event.type for r in _org_events(attack.settings, ORG_A)] == ["SessionIngested"]


@pytest.fixture
def pg(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    migrate.upgrade(settings)
    with connect(database_url(settings), settings.db_schema, autocommit=True) as conn:
        yield conn


# -- the worker checks the org of the event a job names -----------------------------------------


@pytest.mark.parametrize("same_partition", [True, False], ids=["from-the-stream", "from-the-archive"])
def test_a_retry_naming_another_orgs_ingest_event_fails_for_good_and_copies_nothing(
        settings: Settings, redis_client: redis.Redis, pg: psycopg.Connection[Any], same_partition: bool) -> None:
    # Given org A's session and org B's retry naming A's ingest event, turned into a job by the enqueuer
    attack = _attack(settings, same_partition)
    run_enqueuer(settings, until_caught_up=True)
    [job] = [j for j in _queued_jobs(settings, redis_client) if j.trigger_event_id == attack.retry.event_ids[0]]
    # Then the job is org B's: its org and agent come from the retry's envelope, not from what it names
    assert (job.org_id, job.agent_id, job.partition) == (ORG_B, attack.agent_b, attack.retry.partition)
    assert (job.ingest_event_id, job.ingest_stream_id) == (attack.a_ingest.event_ids[0], attack.a_ingest.stream_id)
    # When a worker processes it (as the process_session actor does: a permanent failure is marked at once)
    processor = SessionProcessor(open_bus(settings, system=True), KeywordExtractor(), ArchiveReader(settings))
    try:
        with pytest.raises(PermanentFailure) as failed:
            processor.process(job)
        assert processor.fail(job, str(failed.value), 1)
    finally:
        processor.close()
    # Then the failure says nothing of org A, and nothing of org A's transcript reached org B
    message = str(failed.value)
    assert ORG_A not in message and AGENT_A not in message and SECRET not in message.lower()
    _assert_nothing_of_org_a_in_org_b(attack, pg)


def test_the_worker_processes_fail_such_a_retry_at_once(settings: Settings, workers: Any, tmp_path: Path,
                                                       pg: psycopg.Connection[Any]) -> None:
    # Given org B's retry naming org A's ingest event, in another partition (the archive path)
    settings = fast(settings)
    attack = _attack(settings, same_partition=False)
    watcher = Watcher(open_log(settings))
    # When real worker processes (enqueuer and dramatiq actors) run: they summarize A's and B's own sessions
    worker = workers(settings)
    deadline = time.monotonic() + TIMEOUT_S
    while watcher.count("SessionExtractionFailed") + watcher.count("SessionSummarized") < 3:
        assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
        watcher.poll()
    time.sleep(1)  # a second run of the retry (a dramatiq retry) would show up now
    watcher.poll()
    worker.stop()
    # Then the retry failed for good on its first attempt, and B's own summary is the only one in org B
    of_b = [r for r in watcher.events if r.event.org_id == ORG_B]
    assert Counter(r.event.type for r in of_b if r.event.type.startswith("Session")) == {
        "SessionIngested": 1, "SessionRetryRequested": 1, "SessionSummarized": 1, "SessionExtractionFailed": 1}
    [failed] = [r.event.data for r in of_b if isinstance(r.event.data, ev.SessionExtractionFailed)]
    assert failed.attempts == 1 and SECRET not in failed.error
    [summary] = [r.event for r in of_b if r.event.type == "SessionSummarized"]
    assert str(summary.causation_id) != attack.a_ingest.event_ids[0]  # from B's own ingest
    assert not any(_mentions_secret(r) for r in of_b)
    run_projection(settings, "memories", until_caught_up=True)
    contents = [str(c) for (c,) in pg.execute("SELECT content FROM memories WHERE org_id = %s", (ORG_B,))]
    assert contents and not any(SECRET in c.lower() for c in contents)


# -- an agent's bus refuses the internal commands -------------------------------------------------


def _internal_commands(session_ingest: Receipt, agent_id: str) -> dict[str, Command]:
    common: dict[str, Any] = {"org_id": ORG_B, "agent_id": agent_id}
    expires = datetime.now(timezone.utc) - timedelta(seconds=1)
    return {type(c).__name__: c for c in (
        SummarizeSession(**common, session_id=SESSION, summary="a summary", extractor="keywords"),
        MarkSessionFailed(**common, session_id=SESSION, error="it failed", attempts=1),
        RetrySession(**common, session_id=SESSION, ingest_event_id=UUID(session_ingest.event_ids[0]),
                     ingest_stream_id=session_ingest.stream_id),
        ExpireMemory(**common, memory_id="m1", expires_at=expires),
        PurgeTranscript(**common, session_id=SESSION, retention_days=30),
    )}


@pytest.fixture
def internal(settings: Settings) -> dict[str, Command]:
    """One command of each internal type, on an existing session and memory of org B."""
    bus = open_bus(settings, tenant=ORG_B)
    receipt = _ingest(bus, ORG_B, "agent-b", OWN_TRANSCRIPT)
    bus.send(StoreMemory(org_id=ORG_B, agent_id="agent-b", memory_id="m1", content="due",
                         expires_at=datetime.now(timezone.utc) + timedelta(seconds=1)))
    commands = _internal_commands(receipt, "agent-b")
    assert sorted(commands) == sorted(INTERNAL)
    return commands


def _stream_lengths(settings: Settings) -> list[int]:
    log = open_log(settings)
    return [log.length(p) for p in range(log.partitions)]


@pytest.mark.parametrize("tenant", [None, ORG_B], ids=["any-org", "tenant-b"])
@pytest.mark.parametrize("kind", INTERNAL)
def test_an_agents_bus_refuses_the_internal_commands_and_appends_nothing(
        settings: Settings, internal: dict[str, Command], kind: str, tenant: str | None) -> None:
    bus = open_bus(settings) if tenant is None else open_bus(settings, tenant=tenant)
    command = internal[kind]
    before = _stream_lengths(settings)
    with pytest.raises(Unauthorized, match=kind):
        bus.send(command)
    with pytest.raises(Unauthorized):
        bus.send(orjson.loads(command.model_dump_json()))  # its JSON form too, as the surfaces send it
    [outcome] = bus.send_many([command])
    assert isinstance(outcome, Unauthorized)
    assert _stream_lengths(settings) == before


def test_a_system_bus_accepts_the_internal_commands(settings: Settings, internal: dict[str, Command]) -> None:
    before = sum(_stream_lengths(settings))
    outcomes = open_bus(settings, tenant=ORG_B, system=True).send_many([internal[k] for k in INTERNAL])
    assert all(isinstance(o, Receipt) and not o.duplicate for o in outcomes), outcomes
    assert sum(_stream_lengths(settings)) == before + len(INTERNAL)
    # ... within its tenant only
    other = internal["PurgeTranscript"].model_copy(update={"org_id": ORG_A})
    with pytest.raises(Unauthorized, match="org-b"):
        open_bus(settings, tenant=ORG_B, system=True).send(other)
