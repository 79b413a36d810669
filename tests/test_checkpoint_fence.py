"""The checkpoint compare-and-set fences in every case, a lost first commit included.

The memories projection commits asynchronously (`durable_commit = False`): a PostgreSQL
crash may lose its last batches, rows and checkpoint together, and the projector must
then be fenced and re-apply them from the ledger. When the lost commit is the one that
created a partition's checkpoint row, the row is simply missing after the restart; a
checkpoint write that created it again at the next batch's end would skip the lost
events for good. These tests lose exactly that commit on a private PostgreSQL cluster
(the shared one is never crashed), then check the fence and the rebuilt read model.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from commands import open_bus
from ledger import Settings, open_log
from ledger.connections import database_url
from ledger.events import RecordedEvent
from projections import PROJECTIONS, FencedOut, Projector, ProjectorOptions, RunStats, open_projection
from projections.postgres import migrate
from projections.postgres.memories import MemoriesProjection

from workload import clean_digest, live_digest, send_all, workload

# An asynchronous commit stays in the WAL buffers until the WAL writer writes it: with a
# long writer delay, no autovacuum and no background writer, nothing else writes it
# before the immediate shutdown, which then loses it like a crash would.
SERVER_OPTIONS = ("-c listen_addresses=127.0.0.1 -c fsync=on -c wal_writer_delay=10s -c autovacuum=off"
                  " -c bgwriter_lru_maxpages=0")


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        pytest.fail("pg_ctl/initdb not found (install the PostgreSQL server binaries)", pytrace=False)
    return candidates[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A throw-away PostgreSQL cluster in `root`, run by the `postgres` OS user when we are root."""

    bin: Path
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*owner, str(self.bin / tool), *args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = self.root / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stdout}{done.stderr}\n{tail}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.root / "data"), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.root} {SERVER_OPTIONS}", "start")

    def crash(self) -> None:
        """Immediate shutdown: no checkpoint, no WAL flush; the next start runs crash recovery."""
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="memledger-pg-"))
    if os.geteuid() == 0:
        os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)  # initdb refuses to run as root
    node = Cluster(_bin_dir(), root, _free_port())
    try:
        node.init()
        node.start()
        yield node
    finally:
        try:
            node.stop()
        except RuntimeError:
            pass  # not running (a failed start, or a crash the test did not restart from)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private(settings: Settings, cluster: Cluster) -> Settings:
    """The test's namespace, its read models on the private cluster (its ledger on the shared Redis)."""
    moved = settings.model_copy(update={"database_url": cluster.url})
    migrate.upgrade(moved)
    return moved


def _stored(settings: Settings) -> dict[int, str]:
    with psycopg.connect(database_url(settings), options=f"-c search_path={settings.db_schema}") as conn:
        rows = conn.execute("SELECT partition, stream_id FROM projection_checkpoints"
                            " WHERE projection = 'memories'").fetchall()
    return {int(p): str(s) for p, s in rows}


def _flush_wal(settings: Settings) -> None:
    """Make everything committed so far durable (the crash should lose only what follows)."""
    with psycopg.connect(database_url(settings), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def _first_events(settings: Settings, count: int) -> tuple[int, list[RecordedEvent]]:
    log = open_log(settings)
    partition = max(range(settings.partitions), key=lambda p: len(log.read(p, count=count)))
    events = log.read(partition, count=count)
    assert len(events) == count, f"partition {partition} holds only {len(events)} events"
    return partition, events


def test_a_lost_commit_that_created_the_checkpoint_fences_the_next_batch(private: Settings, cluster: Cluster) -> None:
    # Given events in the ledger and the memories projection about to apply a partition's first batch
    assert send_all(open_bus(private), workload(600, seed=21)) == 600
    partition, events = _first_events(private, 100)
    first, second = events[:50], events[50:]
    projection = MemoriesProjection(database_url(private), private.db_schema)
    try:
        projection.ensure_current()
        _flush_wal(private)
        # When the asynchronous commit of the first batch (which creates the checkpoint row)
        # is lost to a crash right after it, and the database comes back
        projection.apply(partition, first, "0-0")
        cluster.crash()
        cluster.start()
        assert _stored(private) == {}, "the crash did not lose the first commit: nothing was reproduced"
        projection.reconnect()
        # Then the next batch, read from where the lost batch ended, is fenced and writes nothing
        with pytest.raises(FencedOut, match=f"partition {partition}"):
            projection.apply(partition, second, first[-1].position.stream_id)
        assert projection.checkpoints() == {}
        with projection.conn.transaction():
            assert projection.conn.execute("SELECT count(*) FROM memories").fetchone() == (0,)
        # And re-applying from the stored truth (the start) brings the partition back whole
        projection.apply(partition, first, "0-0")
        projection.apply(partition, second, first[-1].position.stream_id)
        assert projection.checkpoints() == {partition: second[-1].position.stream_id}
    finally:
        projection.close()


def test_a_running_projector_rides_out_the_crash_and_matches_a_clean_rebuild(private: Settings,
                                                                             cluster: Cluster) -> None:
    # Given a few thousand events over every partition
    assert send_all(open_bus(private), workload(3_000, seed=22)) == 3_000
    log = open_log(private)
    projection = MemoriesProjection(database_url(private), private.db_schema)
    projector = Projector(log, projection, None, ProjectorOptions(batch=200, outage_s=60))
    lost: list[int] = []

    def crash_after_the_first_batch(stats: RunStats) -> None:
        if stats.batches == 0 or lost:
            return
        cluster.crash()
        cluster.start()
        stored = _stored(private)
        lost.extend(p for p, sid in stats.cursors.items() if stored.get(p) != sid)
        assert lost, "the crash lost no first commit: nothing was reproduced"
        assert all(p not in stored for p in lost), stored  # lost with the commit that created them

    # When PostgreSQL crashes just after the projector's first batch, losing the commit
    # that created a partition's checkpoint row, and the same projector carries on
    try:
        projector.run(until_caught_up=True, on_batch=crash_after_the_first_batch)
    finally:
        projection.close()
    # Then every lost batch was applied again: the read model equals a clean rebuild
    assert lost
    heads = {p: h for p in range(private.partitions) if (h := log.head(p))}
    assert _stored(private) == heads
    assert live_digest(private) == clean_digest(private)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_every_checkpoint_write_fences_instead_of_creating_a_missing_checkpoint(settings: Settings,
                                                                                name: str) -> None:
    # Given a read model that has applied nothing of a partition (no checkpoint)
    migrate.upgrade(settings)
    assert send_all(open_bus(settings), workload(200, seed=23)) == 200
    partition, events = _first_events(settings, 3)
    projection = open_projection(name, settings)
    try:
        projection.ensure_current()
        # When a batch or a dead letter claims to follow an event it never applied, it is fenced
        with pytest.raises(FencedOut):
            projection.apply(partition, events[1:], events[0].position.stream_id)
        with pytest.raises(FencedOut):
            projection.dead_letter(partition, events[1].position.stream_id, events[0].position.stream_id,
                                   str(events[1].event.event_id), events[1].event.type, "poison", 1)
        assert projection.checkpoints() == {}
        # Only a batch read from the start creates the checkpoint, and only once
        projection.apply(partition, events[:1], "0-0")
        with pytest.raises(FencedOut):
            projection.apply(partition, events[:1], "0-0")
        projection.dead_letter(partition, events[1].position.stream_id, events[0].position.stream_id,
                               str(events[1].event.event_id), events[1].event.type, "poison", 1)
        projection.apply(partition, events[2:], events[1].position.stream_id)
        assert projection.checkpoints() == {partition: events[2].position.stream_id}
    finally:
        projection.close()
