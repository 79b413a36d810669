"""Processing sessions in-process against the real Redis and PostgreSQL (no dramatiq runtime here:
messages are read straight from the broker's Redis keys). The end-to-end tests with real dramatiq
worker processes are in test_workers_e2e.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
import pytest
import redis
from dramatiq import Message as DramatiqMessage
from typer.testing import CliRunner

from commands import CommandBus, IngestSession, StoreMemory, open_bus
from ledger import Settings
from ledger import events as ev
from ledger.connections import database_url
from ledger.events import Message, RecordedEvent
from ledger.log import Receipt
from memledger.cli import app
from memledger.cli.common import settings as cli_settings
from projections import run_projection
from projections.hierarchy import HierarchyQuery, SessionNotFound
from projections.postgres import migrate
from projections.postgres.base import connect
from projections.postgres.hierarchy_reads import hierarchy, session_tree
from workers.broker import SESSIONS_QUEUE, WorkerKeys
from workers.enqueuer import NAME as ENQUEUER
from workers.enqueuer import run_enqueuer
from workers.extract import Extraction, ExtractionError, KeywordExtractor
from workers.ingest import SessionQueue
from workers.jobs import Job, job_for
from workers.plan import item_key, plan, summary_key
from workers.process import PermanentFailure, ArchiveReader, SessionProcessor
from workers.sample import sessions


@dataclass
class World:
    settings: Settings
    bus: CommandBus
    conn: psycopg.Connection[Any]
    client: redis.Redis
    processors: list[SessionProcessor]

    def events(self, *types: str) -> list[RecordedEvent]:
        log = self.bus.log
        return [r for p in range(log.partitions) for r in log.iter_partition(p) if not types or r.event.type in types]

    def project(self, *names: str) -> None:
        for name in names or ("memories", "archive"):
            run_projection(self.settings, name, until_caught_up=True)

    def processor(self, extractor: Any = None) -> SessionProcessor:
        self.processors.append(SessionProcessor(self.bus, extractor or KeywordExtractor(), ArchiveReader(self.settings)))
        return self.processors[-1]

    def queued_jobs(self) -> list[Job]:
        raw = self.client.hgetall(f"{WorkerKeys(self.settings.namespace).queue(SESSIONS_QUEUE)}.msgs")
        return [Job.from_kwargs(DramatiqMessage.decode(data if isinstance(data, bytes) else data.encode()).kwargs)
                for data in raw.values()]


@pytest.fixture
def world(settings: Settings, redis_client: redis.Redis) -> Iterator[World]:
    migrate.upgrade(settings)
    with connect(database_url(settings), settings.db_schema, autocommit=True) as conn:
        world = World(settings, open_bus(settings, system=True), conn, redis_client, [])  # the workers' bus
        yield world
        for processor in world.processors:
            processor.close()


def _ingest(world: World, commands: Sequence[IngestSession]) -> list[Receipt]:
    outcomes = world.bus.send_many(list(commands))
    assert all(isinstance(o, Receipt) for o in outcomes), outcomes
    return outcomes  # type: ignore[return-value]


def _jobs(world: World) -> list[Job]:
    return [j for r in world.events("SessionIngested") if (j := job_for(r)) is not None]


class Failing:
    """An extractor that always fails (a stand-in for an LLM that is down)."""

    name = "failing"

    def extract(self, transcript: Sequence[Message]) -> Extraction:
        raise ExtractionError("the extractor is down")


# -- exactly once in effect ------------------------------------------------------------


def test_processing_a_session_twice_appends_its_results_once(world: World) -> None:
    # Given an ingested session
    _ingest(world, list(sessions(1)))
    [job] = _jobs(world)
    processor = world.processor()
    # When it is processed, then processed again (a redelivered message)
    assert processor.process(job) == "summarized"
    assert processor.process(job) == "skipped"
    # And again after every idempotency key expired (the write-side marker is permanent)
    keys = [world.bus.log.keys.idempotency(job.partition, job.org_id, job.agent_id, k)
            for k in [summary_key(job.ingest_event_id)] + [item_key(job.ingest_event_id, i) for i in range(30)]]
    world.client.delete(*keys)
    assert processor.process(job) == "skipped"
    # Then there is one summary, and each memory once
    [summary] = world.events("SessionSummarized")
    stored = world.events("MemoryStored")
    assert isinstance(summary.event.data, ev.SessionSummarized)
    assert sorted(r.event.subject_id for r in stored) == sorted(summary.event.data.memory_ids)
    assert {r.event.causation_id for r in stored + [summary]} == {summary.event.causation_id}
    assert str(summary.event.causation_id) == job.ingest_event_id


def test_a_run_that_races_past_the_check_appends_nothing_new(world: World) -> None:
    # Given a processed session
    _ingest(world, list(sessions(1)))
    [job] = _jobs(world)
    processor = world.processor()
    assert processor.process(job) == "summarized"
    before = len(world.events())
    # When a second run raced past the "already done?" check and appends its results anyway
    ingest = processor.ingest_event(job)
    assert isinstance(ingest.data, ev.SessionIngested)
    commands = plan(job, ingest, KeywordExtractor().extract(ingest.data.transcript), "keywords")
    outcomes = world.bus.send_many(commands)
    # Then every command is answered with its original receipt, and nothing is appended
    assert all(isinstance(o, Receipt) and o.duplicate for o in outcomes)
    assert len(world.events()) == before


def test_the_enqueuer_enqueues_each_session_and_a_lost_checkpoint_only_duplicates_messages(world: World) -> None:
    # Given 6 ingested sessions and other events
    _ingest(world, list(sessions(6)))
    world.bus.send(StoreMemory(org_id="acme", agent_id="agent-0", content="not a session"))
    # When the enqueuer runs, then runs again from scratch (a crash after enqueueing, before committing)
    run_enqueuer(world.settings, until_caught_up=True)
    assert len(world.queued_jobs()) == 6
    world.conn.execute("DELETE FROM projection_checkpoints WHERE projection = %s", (ENQUEUER,))
    run_enqueuer(world.settings, until_caught_up=True)
    jobs = world.queued_jobs()
    assert len(jobs) == 12 and len({j.trigger_event_id for j in jobs}) == 6
    # Then processing every message, duplicates included, summarizes each session once
    processor = world.processor()
    results = Counter(processor.process(job) for job in jobs)
    assert results == {"summarized": 6, "skipped": 6}
    summaries = Counter(r.event.subject_id for r in world.events("SessionSummarized"))
    assert len(summaries) == 6 and set(summaries.values()) == {1}


# -- failures and retries --------------------------------------------------------------


def test_a_failed_session_is_marked_and_can_be_retried_by_command(world: World) -> None:
    # Given a session whose extraction keeps failing, marked failed once retries ran out
    _ingest(world, list(sessions(1)))
    [job] = _jobs(world)
    with pytest.raises(ExtractionError):
        world.processor(Failing()).process(job)
    assert world.processor().fail(job, "ExtractionError: the extractor is down", 3)
    assert not world.processor().fail(job, "ExtractionError: the extractor is down", 3)  # once per trigger
    world.project()
    tree = session_tree(world.conn, job.org_id, job.session_id)
    assert (tree.session["status"], tree.session["error"]) == ("failed", "ExtractionError: the extractor is down")
    # When an operator retries it, and the enqueuer turns the retry into a job
    queue = SessionQueue(world.bus, world.conn)
    queue.retry(job.org_id, job.session_id, reason="extractor is back")
    run_enqueuer(world.settings, until_caught_up=True)
    retry_job = [j for j in world.queued_jobs() if j.trigger_event_id != job.trigger_event_id][0]
    assert (retry_job.ingest_event_id, retry_job.ingest_stream_id) == (job.ingest_event_id, job.ingest_stream_id)
    assert world.processor().process(retry_job) == "summarized"
    # Then the session is summarized and the error cleared
    world.project()
    tree = session_tree(world.conn, job.org_id, job.session_id)
    assert (tree.session["status"], tree.session["error"]) == ("summarized", None)
    assert len(tree.summary) == 1 and tree.discrete
    # And a summarized session is not retried without --force
    with pytest.raises(Exception, match="is summarized, not failed"):
        queue.retry(job.org_id, job.session_id)


def test_a_job_pointing_at_the_wrong_event_fails_for_good(world: World) -> None:
    _ingest(world, list(sessions(2)))
    a, b = _jobs(world)
    wrong = Job(**{**a.kwargs(), "ingest_stream_id": b.ingest_stream_id, "partition": b.partition})
    with pytest.raises(PermanentFailure, match="nor in the archive|not the ingest"):
        world.processor().process(wrong)


# -- queue position ----------------------------------------------------------------------


def test_ingest_returns_at_once_with_a_queue_position(world: World) -> None:
    queue = SessionQueue(world.bus, world.conn)
    items = list(sessions(4))
    # With nothing enqueued yet, each session is behind the ones ingested before it
    assert [queue.ingest(c).queue_position for c in items[:3]] == [0, 1, 2]
    # Once the enqueuer has put those in the queue, the next one is behind the 3 ready messages
    run_enqueuer(world.settings, until_caught_up=True)
    ticket = queue.ingest(items[3])
    assert ticket.queue_position == 3 and ticket.session_id == items[3].session_id
    assert ticket.receipt.subject_version == 1


# -- the hierarchy ---------------------------------------------------------------------


def test_the_hierarchy_links_sessions_summaries_and_discrete_memories(world: World) -> None:
    # Given three processed sessions and one memory stored directly
    _ingest(world, list(sessions(3, agents=1)))
    processor = world.processor()
    for job in _jobs(world):
        processor.process(job)
    world.bus.send(StoreMemory(org_id="acme", agent_id="agent-0", memory_id="direct", content="likes tea"))
    world.project("memories")
    first = _jobs(world)[0]
    # Then one session's subtree is raw -> summary -> discrete
    nodes = hierarchy(world.conn, HierarchyQuery("acme", session_id=first.session_id))
    by_level = Counter(n["level"] for n in nodes)
    assert by_level["raw"] == 1 and by_level["summary"] == 1 and by_level["discrete"] >= 1
    summary = next(n for n in nodes if n["level"] == "summary")
    assert summary["parent_id"] == first.session_id
    assert all(n["parent_id"] == summary["node_id"] for n in nodes if n["level"] == "discrete")
    # And the filters narrow it: by level, by time, by limit
    summaries = hierarchy(world.conn, HierarchyQuery("acme", ("summary",)))
    assert len(summaries) == 3 and {n["memory_type"] for n in summaries} == {"summary"}
    discrete = hierarchy(world.conn, HierarchyQuery("acme", ("discrete",), limit=1000))
    assert any(n["node_id"] == "direct" and n["parent_id"] is None for n in discrete)
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert hierarchy(world.conn, HierarchyQuery("acme", since=future)) == []
    assert len(hierarchy(world.conn, HierarchyQuery("acme", limit=2))) == 2
    with pytest.raises(SessionNotFound):
        session_tree(world.conn, "acme", "no-such-session")


# -- the CLI -----------------------------------------------------------------------------


def _cli(world: World, *args: str, stdin: str | None = None) -> Any:
    s = world.settings
    env = {"MEMLEDGER_REDIS_URL": s.redis_url or "", "MEMLEDGER_DATABASE_URL": s.database_url or "",
           "MEMLEDGER_NAMESPACE": s.namespace, "MEMLEDGER_PARTITIONS": str(s.partitions),
           "MEMLEDGER_ALLOW_VOLATILE": "1"}
    cli_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, list(args), input=stdin, env=env)
    finally:
        cli_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result


def test_cli_ingest_show_hierarchy_retry_and_status(world: World) -> None:
    # Ingest: each line gets a receipt and a queue position
    lines = "".join(orjson.dumps(c.model_dump(mode="json", exclude={"type"})).decode() + "\n" for c in sessions(2))
    out = [orjson.loads(x) for x in _cli(world, "session", "ingest", "--json", stdin=lines).output.splitlines()]
    assert [o["queue_position"] for o in out] == [0, 1]
    jobs = _jobs(world)
    world.processor().process(jobs[0])
    world.processor().fail(jobs[1], "ExtractionError: down", 3)
    world.project()
    # Show: the session with its summary and memories
    shown = orjson.loads(_cli(world, "session", "show", jobs[0].session_id, "--org", "acme", "--json").output)
    assert shown["session"]["status"] == "summarized" and len(shown["summary"]) == 1 and shown["discrete"]
    assert "summary (" in _cli(world, "session", "show", jobs[0].session_id, "--org", "acme").output
    # Query hierarchy with filters
    rows = orjson.loads(_cli(world, "query", "hierarchy", "--org", "acme", "--level", "summary", "--json").output)
    assert [r["session_id"] for r in rows["rows"]] == [jobs[0].session_id]
    # Status: the failed session and its error are visible
    status = orjson.loads(_cli(world, "worker", "status", "--json").output)
    assert status["failed"] == 1 and status["recent_failures"][0]["error"] == "ExtractionError: down"
    assert status["daily"][0]["processed"] == 1 and status["daily"][0]["failed"] == 1
    assert "oldest pending" in _cli(world, "worker", "status").output
    # Retry by command
    assert "retry of" in _cli(world, "session", "retry", jobs[1].session_id, "--org", "acme").output
    assert [r.event.type for r in world.events("SessionRetryRequested")] == ["SessionRetryRequested"]
