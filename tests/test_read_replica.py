"""Reads from a streaming replica (MEMLEDGER_DATABASE_READ_URL): a `consistent_with` read waits
until the replica has applied the write's checkpoint, and answers 503 rather than stale data.

A private primary (initdb) and its replica (pg_basebackup -R) on free loopback ports; the
shared PostgreSQL is never paused. Projectors write to the primary, the HTTP API reads the
replica, and replay on the replica is paused (`pg_wal_replay_pause()`) to make it lag.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from ledger import Settings
from projections.postgres import migrate

from http_server import open_api
from test_checkpoint_fence import Cluster, _bin_dir, _free_port

# Commits reach the WAL (and so the replica) at once; no other writer needed.
OPTIONS = "-c listen_addresses=127.0.0.1 -c wal_level=replica -c max_wal_senders=4 -c autovacuum=off"


def _binaries() -> Path:
    """The server binaries, pg_basebackup among them (a pg_ctl on PATH may be a lone wrapper)."""
    found = _bin_dir()
    if (found / "pg_basebackup").exists():
        return found
    versioned = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"), key=lambda p: int(p.parts[-3]))
    if not versioned:
        pytest.fail("pg_basebackup not found (install the PostgreSQL server binaries)", pytrace=False)
    return versioned[-1].parent


@dataclass
class Replica(Cluster):
    """A hot standby of `primary`, cloned with pg_basebackup -R (it streams from the primary)."""

    def clone(self, primary: Cluster) -> None:
        self._run("pg_basebackup", "-D", str(self.root / "data"), "-R", "-X", "stream", "--no-sync",
                  "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.root} {OPTIONS} -c hot_standby=on", "start")

    def sql(self, statement: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement)


class Primary(Cluster):
    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.root} {OPTIONS}", "start")


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Primary, Replica]]:
    roots = [Path(tempfile.mkdtemp(prefix=f"memledger-{name}-")) for name in ("primary", "replica")]
    if os.geteuid() == 0:  # initdb refuses to run as root: the `postgres` OS user runs both
        for root in roots:
            os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)
    bin_dir = _binaries()
    primary, replica = Primary(bin_dir, roots[0], _free_port()), Replica(bin_dir, roots[1], _free_port())
    started: list[Cluster] = []
    try:
        primary.init()
        primary.start()
        started.append(primary)
        replica.clone(primary)
        replica.start()
        started.append(replica)
        yield primary, replica
    finally:
        for node in reversed(started):
            try:
                node.stop()
            except RuntimeError:
                pass  # already stopped
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def replicated(settings: Settings, pair: tuple[Primary, Replica]) -> Settings:
    """The test's namespace: projectors write the primary, queries read the replica."""
    primary, replica = pair
    moved = settings.model_copy(update={"database_url": primary.url, "database_read_url": replica.url})
    migrate.upgrade(moved)
    return moved


def _lsn_applied(replica: Replica, primary: Primary, timeout: float = 10.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    with psycopg.connect(primary.url, autocommit=True) as p, psycopg.connect(replica.url, autocommit=True) as r:
        target = p.execute("SELECT pg_current_wal_lsn()").fetchone()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target).fetchone()
            if row and row[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the replica did not catch up")


def test_consistent_reads_wait_for_the_replica_and_never_answer_stale(
        replicated: Settings, pair: tuple[Primary, Replica]) -> None:
    primary, replica = pair
    with open_api(replicated) as api:
        key = api.key("acme", "agent", agent="bot")
        _lsn_applied(replica, primary)  # the key, for the replica's own look-ups
        with api.client(key) as http:
            # Given a write, projected on the primary
            written = http.post("/v1/memories", json={"content": "version 1", "tags": ["seat"]})
            memory_id, token = written.json()["memory_id"], written.headers["X-Consistency-Token"]
            api.project(("memories",))
            # When it is read through the replica with its token, the read sees it
            read = http.get(f"/v1/memories/{memory_id}", params={"consistent_with": token})
            assert read.status_code == 200 and read.json()["content"] == "version 1"
            # and replica reads are answered, not cached (a replica may lag the cache's generations)
            for _ in range(2):
                listed = http.get("/v1/memories", params={"tag": "seat", "consistent_with": token})
                assert listed.headers["X-Cache-Status"] == "MISS"
            # Given replay paused on the replica and a newer write applied on the primary
            replica.sql("SELECT pg_wal_replay_pause()")
            try:
                changed = http.patch(f"/v1/memories/{memory_id}", json={"content": "version 2"})
                newer = changed.headers["X-Consistency-Token"]
                api.project(("memories",))
                with psycopg.connect(primary.url, autocommit=True,
                                     options=f"-c search_path={replicated.db_schema}") as conn:
                    assert conn.execute("SELECT content FROM memories").fetchall() == [("version 2",)]
                # When a read names the newer token, it waits, then answers 503 instead of stale data
                stale = http.get(f"/v1/memories/{memory_id}")
                assert stale.json()["content"] == "version 1"  # the replica really lags
                waited = http.get(f"/v1/memories/{memory_id}", params={"consistent_with": newer})
                assert waited.status_code == 503 and waited.json()["code"] == "timeout", waited.text
            finally:
                replica.sql("SELECT pg_wal_replay_resume()")
            # Then, replay resumed, the same read answers with the write
            fresh = http.get(f"/v1/memories/{memory_id}", params={"consistent_with": newer})
            assert fresh.status_code == 200 and fresh.json()["content"] == "version 2"
