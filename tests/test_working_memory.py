"""Working memory (issue 17) on the real servers: conversations appended message by message,
the recent ones served from the Redis read model, everything kept in PostgreSQL.

The end-to-end extraction with SIGKILLed dramatiq workers is at the end of this file; the
HTTP surface is in test_http_conversations.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from commands import AppendMessage, CloseSession, StoreMemory, open_bus
from ledger import Settings, open_log
from ledger import events as ev
from ledger.errors import InvalidCommand, InvalidQuery, NotFound, SessionClosed, UnknownSubject
from ledger.events import RecordedEvent
from ledger.log import Receipt
from memledger.app import App
from projections import run_projection
from projections.postgres import migrate
from workers.expiry import run_maintenance
from workers.extract import KeywordExtractor
from workers.jobs import job_for
from workers.process import ArchiveReader, SessionProcessor

from test_http_health import PrivateRedis
from test_durability import free_port
from test_projection_contract import ProjectionContract
from test_workers_e2e import Watcher, fast, workers  # noqa: F401  (workers: the fixture)
from workload import send_all, workload

READ_MODELS = ("conversations", "recent_messages")


def _project(settings: Settings, *names: str) -> None:
    for name in names or READ_MODELS:
        run_projection(settings, name, until_caught_up=True)


def _message(session: str, i: int, org: str = "acme", agent: str = "bot", **extra: Any) -> AppendMessage:
    role = ("user", "assistant")[i % 2]
    return AppendMessage(org_id=org, agent_id=agent, session_id=session, role=role, content=f"message {i}",
                         **extra)


def _session_events(settings: Settings, session: str, org: str = "acme",
                    agent: str = "bot") -> list[RecordedEvent]:
    log = open_log(settings)
    try:
        p = log.partition_of(org, agent)
        return [r for r in log.iter_partition(p) if r.event.subject_id == session]
    finally:
        log.close()


def _lengths(settings: Settings) -> int:
    log = open_log(settings)
    try:
        return sum(log.length(p) for p in range(log.partitions))
    finally:
        log.close()


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    migrate.upgrade(settings)
    with App.open(settings) as opened:
        yield opened


# -- ordering and idempotency under concurrency ----------------------------------------------


def test_1000_messages_from_4_concurrent_writers_with_retries_come_back_in_ledger_order(
        settings: Settings, app: App) -> None:
    # Given 4 writers appending 250 messages each to one session, every 10th sent twice (a retry)
    def writer(w: int) -> None:
        bus = open_bus(settings)
        try:
            for i in range(250):
                command = AppendMessage(org_id="acme", agent_id="bot", session_id="chat", role="user",
                                        content=f"w{w} #{i}", idempotency_key=f"w{w}-{i}")
                first = bus.send(command)
                if i % 10 == 0:
                    again = bus.send(command)
                    assert again.duplicate and again.stream_id == first.stream_id
        finally:
            bus.log.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _project(settings)
    # When the last messages are read, from PostgreSQL (all) and from the cache (the last 30)
    ledger = [r.event for r in _session_events(settings, "chat")]
    everything = app.recent_messages("acme", "chat", 1000)
    recent = app.recent_messages("acme", "chat", 30)
    # Then the ledger holds each message once, numbered 1..1000 in append order
    assert len(ledger) == 1000 and [e.subject_version for e in ledger] == list(range(1, 1001))
    assert len({e.data.content for e in ledger if isinstance(e.data, ev.MessageAppended)}) == 1000
    # ... and both read models answer in exactly that order
    expected = [e.data.content for e in ledger if isinstance(e.data, ev.MessageAppended)]
    assert everything.source == "database" and [m["content"] for m in everything.messages] == expected
    assert [m["seq"] for m in everything.messages] == list(range(1, 1001))
    assert recent.source == "cache" and [m["content"] for m in recent.messages] == expected[-30:]
    # ... and each writer's own messages stay in the order it sent them
    for w in range(4):
        mine = [c for c in expected if c.startswith(f"w{w} ")]
        assert mine == [f"w{w} #{i}" for i in range(250)]


# -- the cache: cold reads, TTL expiry, more than it holds, Redis down ------------------------


def test_a_cold_read_comes_from_postgresql_and_warms_the_cache(settings: Settings, app: App,
                                                               redis_client: redis.Redis) -> None:
    for i in range(12):
        app.send(_message("s1", i))
    _project(settings, "conversations")
    # Given the cache projector only starts after an eviction wiped its list (its head is known)
    _project(settings, "recent_messages")
    keys = list(redis_client.scan_iter(match=f"{{{settings.namespace}:*:rm:recent_messages:*:m:*"))
    assert len(keys) == 1
    redis_client.delete(*keys)
    # When the session is read twice
    first = app.recent_messages("acme", "s1", 5)
    second = app.recent_messages("acme", "s1", 5)
    # Then the first answer is PostgreSQL's, the second the cache's, and they are the same
    assert (first.source, second.source) == ("database", "cache")
    assert first.messages == second.messages
    assert [m["content"] for m in second.messages] == [f"message {i}" for i in range(7, 12)]
    # ... and asking for more than the cache holds (30) reads PostgreSQL
    assert app.recent_messages("acme", "s1", 12).source == "cache"  # the cache holds the whole session
    stats = app.info().session_cache
    assert stats["sessions_cached"] == 1 and stats["hits"] == 2 and stats["misses"] == 1
    assert stats["memory_bytes"] > 0 and stats["hit_rate"] == pytest.approx(2 / 3, abs=1e-3)


def test_more_than_the_cache_holds_is_read_from_postgresql(settings: Settings) -> None:
    small = settings.model_copy(update={"session_cache_messages": 5})
    migrate.upgrade(small)
    with App.open(small) as app:
        for i in range(20):
            app.send(_message("long", i))
        _project(small)
        cached = app.recent_messages("acme", "long", 5)
        more = app.recent_messages("acme", "long", 6)
        assert (cached.source, more.source) == ("cache", "database")
        assert [m["seq"] for m in more.messages] == list(range(15, 21))
        assert cached.messages == more.messages[1:]


def test_a_session_evicted_by_its_ttl_is_refilled_from_postgresql(settings: Settings) -> None:
    short = settings.model_copy(update={"session_cache_ttl": 1})
    migrate.upgrade(short)
    with App.open(short) as app:
        for i in range(3):
            app.send(_message("brief", i))
        _project(short)
        assert app.recent_messages("acme", "brief", 3).source == "cache"
        time.sleep(1.3)  # the list's TTL passes
        # messages appended while it is evicted move the head only (the list stays absent) ...
        app.send(_message("brief", 3))
        _project(short)
        refilled = app.recent_messages("acme", "brief", 4)
        again = app.recent_messages("acme", "brief", 4)
        # ... and the refill from PostgreSQL has all four, without a gap
        assert (refilled.source, again.source) == ("database", "cache")
        assert [m["seq"] for m in again.messages] == [1, 2, 3, 4]
        assert refilled.messages == again.messages
    # Nothing was appended to the log by the reads
    assert _lengths(short) == 4


def test_reads_answer_from_postgresql_while_redis_is_down(settings: Settings, tmp_path: Path) -> None:
    server = PrivateRedis(free_port(), tmp_path)
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        own = settings.model_copy(update={"redis_url": url, "allow_volatile": False})
        migrate.upgrade(own)
        with App.open(own) as app:
            for i in range(4):
                app.send(_message("s", i))
            _project(own)
            assert app.recent_messages("acme", "s", 2).source == "cache"
            # When the ledger's Redis stops
            server.stop()
            down = app.recent_messages("acme", "s", 2)
            # Then the read still answers, from PostgreSQL, and says why
            assert down.source == "database" and [m["seq"] for m in down.messages] == [3, 4]
            assert down.cache_error is not None and "Redis" in down.cache_error
            assert "error" in app._conversations().cache_stats()
    finally:
        server.stop()


# -- bad input, closed sessions, tenancy ------------------------------------------------------


@pytest.mark.parametrize("raw, error", [
    ({"content": ""}, InvalidCommand),
    ({"content": "   \n"}, InvalidCommand),
    ({"role": "robot"}, InvalidCommand),
    ({"content": "x" * 32_769}, InvalidCommand),
    ({"metadata": {"blob": "y" * 9000}}, InvalidCommand),
    ({"session_id": "bad id with spaces"}, InvalidCommand),
])
def test_bad_messages_are_refused_and_append_nothing(settings: Settings, app: App, raw: dict[str, Any],
                                                     error: type[Exception]) -> None:
    app.send(_message("s", 0))
    before = _lengths(settings)
    command = {"type": "AppendMessage", "org_id": "acme", "agent_id": "bot", "session_id": "s",
               "role": "user", "content": "fine", **raw}
    with pytest.raises(error) as caught:
        app.send(command)
    assert str(caught.value)  # a message that says which field
    assert _lengths(settings) == before


def test_a_closed_session_takes_no_messages_and_no_second_close(settings: Settings, app: App) -> None:
    app.send(_message("s", 0))
    closed = app.close_session("acme", "s", "bot")
    assert closed.subject_version == 2
    before = _lengths(settings)
    with pytest.raises(SessionClosed, match="closed"):
        app.send(_message("s", 1))
    with pytest.raises(SessionClosed):
        app.close_session("acme", "s", "bot")
    with pytest.raises(UnknownSubject, match="does not exist"):
        app.close_session("acme", "never-opened", "bot")
    assert _lengths(settings) == before


def test_a_session_ingested_whole_takes_no_messages(settings: Settings, app: App) -> None:
    app.send({"type": "IngestSession", "org_id": "acme", "agent_id": "bot", "session_id": "whole",
              "transcript": [{"role": "user", "content": "hi"}]})
    before = _lengths(settings)
    with pytest.raises(SessionClosed):
        app.send(_message("whole", 0))
    assert _lengths(settings) == before


def test_another_orgs_session_is_not_found_and_an_agent_key_sees_only_its_agent(settings: Settings,
                                                                                 app: App) -> None:
    app.send(_message("secret", 0, org="acme", agent="bot"))
    app.send(_message("other", 0, org="acme", agent="helper"))
    _project(settings)
    with App.open(settings, tenant="globex") as other_org:
        with pytest.raises(NotFound):
            other_org.recent_messages("acme", "secret", 5)
        with pytest.raises(NotFound):
            other_org.recent_messages(None, "secret", 5)
    with App.open(settings, tenant="acme", agent="bot") as agent_scoped:
        assert agent_scoped.recent_messages(None, "secret", 5).messages[0]["content"] == "message 0"
        with pytest.raises(NotFound):
            agent_scoped.recent_messages(None, "other", 5)
        with pytest.raises(NotFound):
            agent_scoped.recent_messages(None, "other", 5, agent="helper")
    with pytest.raises(InvalidQuery):
        app.recent_messages("acme", "secret", 0)


# -- background: partial summaries, idle close, retention ------------------------------------


def test_a_long_conversation_gets_its_older_part_summarized_once(settings: Settings, app: App) -> None:
    texts = ["We deploy the billing service on Fridays.", "The staging database is PostgreSQL 15.",
             "Alice owns the billing service.", "Remember: invoices are due in 30 days.",
             "The team prefers Python for tooling.", "Next review is on Monday."]
    for i, text in enumerate(texts):
        app.send(AppendMessage(org_id="acme", agent_id="bot", session_id="long", role="user", content=text))
    _project(settings, "conversations")
    trigger = [r for r in _session_events(settings, "long") if r.event.subject_version == 5][0]
    job = job_for(trigger, summarize_every=5)
    assert job is not None and job_for(trigger, summarize_every=0) is None
    processor = SessionProcessor(open_bus(settings, system=True), KeywordExtractor(), ArchiveReader(settings))
    try:
        assert processor.process(job) == "summarized"
        assert processor.process(job) == "duplicate"  # a redelivered job appends nothing
    finally:
        processor.close()
    digests = [r.event for r in _session_events(settings, "long") if r.event.type == "ConversationSummarized"]
    assert len(digests) == 1 and isinstance(digests[0].data, ev.ConversationSummarized)
    assert digests[0].data.through == 5 and digests[0].subject_version == 6  # a touch: the count stays
    # The conversation stays open, and a caller can ask for "summary + last N"
    app.send(_message("long", 99))
    _project(settings)
    answer = app.recent_messages("acme", "long", 2, with_summary=True)
    assert answer.summary == digests[0].data.summary and answer.summary_through == 5
    assert [m["seq"] for m in answer.messages] == [6, 7]


def test_maintenance_closes_idle_and_too_long_conversations_and_purges_old_ones(settings: Settings,
                                                                                app: App) -> None:
    app.send(_message("idle", 0))
    for i in range(3):
        app.send(_message("long", i))
    app.send(_message("fresh", 0))
    _project(settings, "conversations")
    bus = open_bus(settings, system=True)
    conn = app._memories().conn
    now = datetime.now(timezone.utc)
    # Given "idle" and "fresh" were last written now, and the limit is 3 messages
    report = run_maintenance(bus, conn, 30, now=now + timedelta(seconds=5), idle_close_s=60, max_messages=3)
    assert report.closed == 1  # "long" only
    report = run_maintenance(bus, conn, 30, now=now + timedelta(minutes=5), idle_close_s=60, max_messages=3)
    assert report.closed == 2  # "idle" and "fresh" now; "long" is closed already
    closes = {r.event.subject_id: r.event.data for p in ("idle", "long", "fresh")
              for r in _session_events(settings, p) if r.event.type == "SessionClosed"}
    assert {k: v.reason for k, v in closes.items() if isinstance(v, ev.SessionClosed)} == {
        "idle": "idle", "long": "max_messages", "fresh": "idle"}
    with pytest.raises(SessionClosed):
        app.send(_message("long", 9))
    # When the retention has passed, their messages are purged from the read models; the log keeps them
    _project(settings)
    report = run_maintenance(bus, conn, 30, now=now + timedelta(days=31))
    assert report.purged == 3
    _project(settings)
    purged = app.recent_messages("acme", "long", 3)
    assert (purged.source, purged.messages, purged.status) == ("database", [], "closed")
    assert conn.execute("SELECT count(*) AS n FROM session_messages").fetchone() == {"n": 0}
    assert len([r for r in _session_events(settings, "long") if r.event.type == "MessageAppended"]) == 3
    bus.log.close()


# -- the projection contract and replay verify ------------------------------------------------


class TestConversationProjections(ProjectionContract):
    """The registry's contract, over a ledger that holds conversations as well as memories."""

    @pytest.fixture(params=READ_MODELS)
    def name(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def ledger_300(self, settings: Settings) -> Settings:
        migrate.upgrade(settings)
        bus = open_bus(settings)
        chats = [_message(f"c{i % 7}", i, agent=f"a{i % 3}") for i in range(240)]
        commands: list[Any] = workload(60, seed=3)
        mixed = [c for pair in zip(chats[:60], commands) for c in pair] + chats[60:]
        assert send_all(bus, mixed) == 300
        assert bus.send(CloseSession(org_id="acme", agent_id="a0", session_id="c0")).subject_version > 1
        bus.log.close()
        return settings


def test_replay_verify_agrees_for_both_read_models(settings: Settings, app: App) -> None:
    for i in range(50):
        app.send(_message(f"v{i % 4}", i, agent=f"a{i % 2}"))
    app.close_session("acme", "v0", "a0")
    _project(settings, "archive", *READ_MODELS)
    app.recent_messages("acme", "v1", 40, agent="a1")  # a read that refills nothing new: the list is whole
    for name in READ_MODELS:
        result = app.verify(name)
        assert result.agree, result.differences
        assert result.applied == _lengths(settings)


# -- close -> extraction with real dramatiq workers, one of them SIGKILLed ---------------------


def test_closed_conversations_are_summarized_exactly_once_across_a_sigkill(settings: Settings, workers: Any,
                                                                            tmp_path: Path) -> None:
    settings = fast(settings)
    migrate.upgrade(settings)
    watcher = Watcher(open_log(settings))
    log_file = tmp_path / "worker.log"
    bus = open_bus(settings)
    sessions = [f"conv{i}" for i in range(40)]
    facts = ["Bob prefers tea over coffee.", "The launch date is March 3.", "We decided to use PostgreSQL.",
             "Carol owns the on-call rota."]
    for s in sessions:
        for i, text in enumerate(facts):
            bus.send(AppendMessage(org_id="acme", agent_id=f"bot{int(s[4:]) % 4}", session_id=s,
                                   role=("user", "assistant")[i % 2], content=f"{text} ({s})"))
    _project(settings, "conversations")
    # Given workers running, and the conversations closed
    worker = workers(settings)
    victims = worker.wait_for_workers()
    for s in sessions:
        bus.send(CloseSession(org_id="acme", agent_id=f"bot{int(s[4:]) % 4}", session_id=s))
    # When a dramatiq worker is SIGKILLed mid-run (the supervisor restarts it)
    watcher.wait("SessionSummarized", 5, log_file=log_file)
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    at_kill = watcher.count("SessionSummarized")
    worker.wait_for_workers(replacing=victims)
    watcher.wait("SessionSummarized", len(sessions), log_file=log_file)
    time.sleep(3)  # a duplicate still in flight would show up now
    watcher.poll()
    worker.stop()
    bus.log.close()
    # Then every conversation has exactly one summary and each memory was stored once
    assert at_kill < len(sessions), "the kill landed after every session was done"
    summaries = Counter(r.event.subject_id for r in watcher.events if r.event.type == "SessionSummarized")
    assert summaries == Counter({s: 1 for s in sessions})
    stored = [r.event for r in watcher.events if isinstance(r.event.data, ev.MemoryStored)]
    assert len({e.subject_id for e in stored}) == len(stored)
    per_session = Counter(e.data.session_id for e in stored if isinstance(e.data, ev.MemoryStored))
    assert set(per_session) == set(sessions) and min(per_session.values()) >= 2
    # ... caused by the close, and the conversations read model shows them summarized
    closes = {r.event.subject_id: r.event.event_id for r in watcher.events if r.event.type == "SessionClosed"}
    assert all(r.event.causation_id == closes[r.event.subject_id] for r in watcher.events
               if r.event.type == "SessionSummarized")
    _project(settings, "conversations")
    with App.open(settings) as app:
        sql = "SELECT status, count(*) FROM conversations GROUP BY status"
        rows = app._memories().conn.execute(sql).fetchall()
        assert {r["status"]: r["count"] for r in rows} == {"summarized": len(sessions)}


# -- the command line ---------------------------------------------------------------------------


def test_the_cli_appends_reads_and_closes(settings: Settings) -> None:
    from typer.testing import CliRunner

    from memledger.cli import app as cli
    from memledger.cli.common import settings as cli_settings

    from test_cli_consistency import env

    migrate.upgrade(settings)
    cli_settings.cache_clear()
    run = CliRunner().invoke
    try:
        environ = env(settings)
        base = ["--org", "acme", "--agent", "bot"]
        say = ["session", "append", "cli-chat", *base]
        first = run(cli, [*say, "--content", "I prefer tea", "--json"], env=environ)
        assert first.exit_code == 0, first.output
        assert orjson.loads(first.output)["version"] == 1
        piped = run(cli, [*say, "--role", "assistant", "--content", "-", "--metadata", '{"channel": "cli"}',
                          "--idempotency-key", "k1"], input="noted", env=environ)
        assert piped.exit_code == 0 and "#2" in piped.output
        bad = run(cli, [*say, "--role", "robot", "--content", "x"], env=environ)
        # (the console entry point prints a domain error as one line, exit code from ledger.errors)
        assert isinstance(bad.exception, InvalidCommand) and "role" in str(bad.exception)
        _project(settings)
        shown = run(cli, ["session", "messages", "cli-chat", "--org", "acme", "--last", "5", "--json"],
                    env=environ)
        assert shown.exit_code == 0, shown.output
        body = orjson.loads(shown.output)
        assert body["source"] == "cache"
        assert [m["content"] for m in body["messages"]] == ["I prefer tea", "noted"]
        assert body["messages"][1]["metadata"] == {"channel": "cli"}
        text = run(cli, ["session", "messages", "cli-chat", "--org", "acme"], env=environ)
        assert "from the cache" in text.output and "#2 assistant:" in text.output
        closed = run(cli, ["session", "close", "cli-chat", *base], env=environ)
        assert closed.exit_code == 0 and "closed #3" in closed.output
        late = run(cli, [*say, "--content", "late"], env=environ)
        assert isinstance(late.exception, SessionClosed) and late.exception.exit_code == 2
        info = run(cli, ["info", "--json"], env=environ)
        assert orjson.loads(info.output)["session_cache"]["sessions_cached"] == 1
    finally:
        cli_settings.cache_clear()


# -- the benchmark ------------------------------------------------------------------------------


def test_a_tiny_bench_messages_run_measures_every_figure(settings: Settings, redis_client: redis.Redis,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from memledger.bench import messages_bench
    from memledger.cli import app as cli
    from workers.supervisor import child_env

    for name, value in (("APPEND_CALLS", 20), ("READ_CALLS", 20)):
        monkeypatch.setattr(messages_bench, name, value)
    for name, value in child_env(settings).items():
        if name.startswith("MEMLEDGER_"):
            monkeypatch.setenv(name, value)
    out = tmp_path / "messages.json"
    result = CliRunner().invoke(cli, ["bench", "messages", "--sessions", "6", "--per-session", "12",
                                      "--repeat", "1", "--json-file", str(out)])
    assert result.exit_code == 0, result.output
    report = orjson.loads(out.read_bytes())
    figures = {f["name"]: f for f in report["figures"]}
    for name in ("append message, in process", "recent 10 messages, cache",
                 "recent 10 messages, PostgreSQL (cold)"):
        assert figures[f"{name} p50"]["value"] > 0 and figures[f"{name} p50"]["passed"] in (True, False)
    projector = figures["recent_messages projection apply"]
    assert projector["baseline"] == messages_bench.RAW_NAME and projector["ratio"] > 0
    assert report["args"]["events"] == 72
    assert list(redis_client.scan_iter(match=f"{{{report['namespace']}*")) == []


def test_the_activity_feed_shows_a_conversation_as_a_session(settings: Settings, app: App) -> None:
    app.send(StoreMemory(org_id="acme", agent_id="bot", memory_id="x", content="a memory named x"))
    app.send(_message("x", 0))  # a session with the memory's id
    app.close_session("acme", "x", "bot")
    app.send({"type": "ForgetMemory", "org_id": "acme", "agent_id": "bot", "memory_id": "x"})
    _project(settings, "activity")
    feed = app.feed("acme", "bot", 10)
    # Forgetting memory x takes its entries out (and adds none), and leaves the session x's
    assert [(e["type"], e["summary"]) for e in feed] == [
        ("SessionClosed", "conversation closed (closed)"), ("MessageAppended", "user: message 0")]
