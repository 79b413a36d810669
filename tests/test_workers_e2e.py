"""End to end with real dramatiq worker processes (`memledger worker run`) on the loopback servers:
exactly once in effect under SIGKILL, failures marked with their error and retried by command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from commands import open_bus
from ledger import Settings, open_log
from ledger import events as ev
from ledger.codec import decode_entry
from ledger.connections import database_url
from ledger.events import RecordedEvent
from ledger.log import Receipt, RedisEventLog
from projections import run_projection
from projections.postgres import migrate
from projections.postgres.base import connect
from workers.ingest import SessionQueue
from workers.sample import sessions
from workers.status import collect
from workers.supervisor import child_env

TIMEOUT_S = 120.0


def fast(settings: Settings, **extra: Any) -> Settings:
    """Settings that make crash recovery and retries quick enough for a test."""
    return settings.model_copy(update={
        "worker_heartbeat_timeout_ms": 2000, "worker_maintenance_chance": 1_000_000, "lease_ttl_ms": 1000,
        "worker_min_backoff_ms": 100, "worker_max_backoff_ms": 400, "worker_max_retries": 2,
        "maintenance_interval_s": 3600.0, **extra})


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == pid and state != "Z":
                out.append(int(entry.name))
    return out


class WorkerProcess:
    """`memledger worker run` as a subprocess: the supervisor, dramatiq's master and its workers."""

    def __init__(self, settings: Settings, log_file: Path, processes: int = 1, threads: int = 2):
        self.log_file = log_file.open("ab")
        command = [sys.executable, "-m", "memledger", "worker", "run", "--processes", str(processes),
                   "--threads", str(threads)]
        self.proc = subprocess.Popen(command, env=child_env(settings), stdout=self.log_file, stderr=subprocess.STDOUT)

    def tree(self) -> list[int]:
        """Every descendant, deepest first."""
        found: list[int] = []
        frontier = [self.proc.pid]
        while frontier:
            kids = [k for pid in frontier for k in _children(pid)]
            found = kids + found
            frontier = kids
        return found

    def dramatiq_workers(self) -> list[int]:
        """The processes that run actors: grandchildren of the supervisor."""
        return [k for child in _children(self.proc.pid) for k in _children(child)]

    def wait_for_workers(self, timeout_s: float = 60, replacing: Sequence[int] = ()) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while not (pids := [p for p in self.dramatiq_workers() if p not in replacing]):
            assert time.monotonic() < deadline, "dramatiq worker processes did not start"
            assert self.proc.poll() is None, "the supervisor exited"
            time.sleep(0.1)
        return pids

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.log_file.close()

    def kill_all(self) -> None:
        """SIGKILL the whole tree at once (a machine losing power, as far as Redis can tell)."""
        for pid in [*self.tree(), self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        self.log_file.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[Settings], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(settings: Settings) -> WorkerProcess:
        started.append(WorkerProcess(settings, tmp_path / "worker.log"))
        return started[-1]

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill_all()


class Watcher:
    """Follows the ledger and keeps every event of the test's sessions."""

    def __init__(self, log: RedisEventLog):
        self.log = log
        self.cursors = {p: "0-0" for p in range(log.partitions)}
        self.events: list[RecordedEvent] = []

    def poll(self) -> None:
        for entry in self.log.wait_entries(self.cursors, 1000, 100):
            record = decode_entry(*entry)
            self.cursors[record.position.partition] = record.position.stream_id
            self.events.append(record)

    def count(self, event_type: str) -> int:
        return sum(r.event.type == event_type for r in self.events)

    def wait(self, event_type: str, n: int, timeout_s: float = TIMEOUT_S, log_file: Path | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while self.count(event_type) < n:
            if time.monotonic() > deadline:
                tail = log_file.read_text()[-3000:] if log_file else ""
                raise AssertionError(f"{self.count(event_type)} of {n} {event_type} after {timeout_s}s\n{tail}")
            self.poll()


def _ingest(settings: Settings, items: list[Any]) -> None:
    bus = open_bus(settings)
    for start in range(0, len(items), 25):
        outcomes = bus.send_many(items[start:start + 25])
        assert all(isinstance(o, Receipt) for o in outcomes), outcomes


def test_200_sessions_are_summarized_exactly_once_across_sigkills(settings: Settings, workers: Any,
                                                                   tmp_path: Path) -> None:
    settings = fast(settings)
    migrate.upgrade(settings)
    watcher = Watcher(open_log(settings))
    items = list(sessions(200, agents=16))
    log_file = tmp_path / "worker.log"
    # Given workers running and the first 100 sessions ingested
    first = workers(settings)
    killed_worker = first.wait_for_workers()
    _ingest(settings, items[:100])
    # When a dramatiq worker process is SIGKILLed mid-run (the supervisor restarts dramatiq)
    watcher.wait("SessionSummarized", 30, log_file=log_file)
    for pid in killed_worker:
        os.kill(pid, signal.SIGKILL)
    at_first_kill = watcher.count("SessionSummarized")
    # ... the other 100 arrive while it recovers
    feeder = threading.Thread(target=_ingest, args=(settings, items[100:]))
    feeder.start()
    first.wait_for_workers(replacing=killed_worker)
    feeder.join()
    # ... and later every process (supervisor, enqueuer, dramatiq) is SIGKILLed at once, then restarted
    watcher.wait("SessionSummarized", at_first_kill + 40, log_file=log_file)
    first.kill_all()
    at_second_kill = watcher.count("SessionSummarized")
    second = workers(settings)
    watcher.wait("SessionSummarized", 200, log_file=log_file)
    time.sleep(3)  # anything still in flight (a duplicate) would show up now
    watcher.poll()
    second.stop()
    # Then the kills landed mid-run
    assert at_first_kill < 200 and at_second_kill < 200, (at_first_kill, at_second_kill)
    # ... every session has exactly one summary, and each of its memories was stored once
    summaries = {r.event.subject_id: r for r in watcher.events if r.event.type == "SessionSummarized"}
    assert Counter(r.event.type for r in watcher.events)["SessionSummarized"] == 200 == len(summaries)
    assert set(summaries) == {c.session_id for c in items}
    stored = [r for r in watcher.events if isinstance(r.event.data, ev.MemoryStored)]
    assert len({r.event.subject_id for r in stored}) == len(stored)
    by_session = Counter(r.event.data.session_id for r in stored if isinstance(r.event.data, ev.MemoryStored))
    for session_id, summary in summaries.items():
        data = summary.event.data
        assert isinstance(data, ev.SessionSummarized)
        assert by_session[session_id] == len(data.memory_ids) >= 2  # the summary memory and at least one more
    # ... with causation pointing at the session's ingest event
    ingests = {r.event.subject_id: r.event.event_id for r in watcher.events if r.event.type == "SessionIngested"}
    assert all(r.event.causation_id == ingests[r.event.subject_id] for r in summaries.values())
    # ... and the read model agrees
    run_projection(settings, "memories", until_caught_up=True)
    with connect(database_url(settings), settings.db_schema, autocommit=True) as conn:
        statuses: dict[str, int] = dict(conn.execute("SELECT status, count(*) FROM sessions GROUP BY status").fetchall())
        assert statuses == {"summarized": 200}
        memories = conn.execute("SELECT count(*) FROM memories WHERE session_id IS NOT NULL").fetchone()
        assert memories is not None and memories[0] == len(stored)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_session_that_keeps_failing_is_marked_failed_visible_in_status_and_retried(
        settings: Settings, workers: Any, tmp_path: Path) -> None:
    # Given workers whose extractor cannot succeed: an LLM endpoint where nothing listens
    down = fast(settings, extractor="llm", llm_url=f"http://127.0.0.1:{_free_port()}/v1", llm_model="none")
    migrate.upgrade(settings)
    watcher = Watcher(open_log(settings))
    items = list(sessions(2))
    worker = workers(down)
    worker.wait_for_workers()
    _ingest(settings, items)
    # When each session has failed its first try and both retries (with backoff)
    watcher.wait("SessionExtractionFailed", 2, log_file=tmp_path / "worker.log")
    failed = [r.event.data for r in watcher.events if isinstance(r.event.data, ev.SessionExtractionFailed)]
    assert [f.attempts for f in failed] == [3, 3]
    assert all("ExtractionError" in f.error and "unreachable" in f.error for f in failed)
    # Then the failures are visible in the status, as are the live workers
    run_projection(settings, "memories", until_caught_up=True)
    run_projection(settings, "archive", until_caught_up=True)
    with connect(database_url(settings), settings.db_schema, autocommit=True) as conn:
        status = collect(open_log(settings), conn, 2.0)
        assert status.failed == 2 and status.pending == 0
        assert {f.session_id for f in status.recent_failures} == {c.session_id for c in items}
        assert status.daily[0][2] == 2
        assert {b.role for b in status.workers if b.alive} == {"dramatiq", "supervisor"}
        worker.stop()
        # When the extractor is fixed and the sessions are retried by command
        fixed = workers(fast(settings))
        queue = SessionQueue(open_bus(settings, system=True), conn)  # an operator's retry
        for c in items:
            queue.retry(c.org_id, c.session_id, reason="extractor fixed")
        watcher.wait("SessionSummarized", 2, log_file=tmp_path / "worker.log")
        fixed.stop()
        # Then both are summarized, once
        run_projection(settings, "memories", until_caught_up=True)
        rows = conn.execute("SELECT status, error FROM sessions ORDER BY session_id").fetchall()
        assert rows == [("summarized", None), ("summarized", None)]
        assert watcher.count("SessionSummarized") == 2 and watcher.count("SessionRetryRequested") == 2


def test_queue_depth_and_oldest_pending_session_while_no_worker_runs(settings: Settings) -> None:
    from workers.enqueuer import run_enqueuer

    migrate.upgrade(settings)
    _ingest(settings, list(sessions(3)))
    run_projection(settings, "memories", until_caught_up=True)
    with psycopg.connect(database_url(settings), autocommit=True,
                         options=f"-c search_path={settings.db_schema}") as conn:
        before = collect(open_log(settings), conn, 2.0)
        assert (before.queue.ready, before.backlog, before.pending) == (0, 3, 3)
        assert before.oldest_pending is not None and before.oldest_pending.session_id == "ses-0-0"
        run_enqueuer(settings, until_caught_up=True)
        after = collect(open_log(settings), conn, 2.0)
        assert (after.queue.ready, after.backlog) == (3, 0)
