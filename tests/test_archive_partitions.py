"""The archive partitioned by month of stream time: rows land in their month, position reads
prune to the months they span, and migrating a non-partitioned archive keeps every row."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

import orjson
import psycopg
import pytest

from ledger import Settings, open_log
from ledger import archive, archive_months
from ledger.connections import database_url
from ledger.events import stream_id_key
from projections import run_projection
from projections.postgres import migrate
from projections.postgres.digest import sum_digest

from test_replay_helpers import sql


def _ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, 12, tzinfo=timezone.utc).timestamp() * 1000)


def _body(memory_id: str, ms: int) -> bytes:
    """A MemoryStored body (schema v1, upcast on read) that occurred at `ms`."""
    return orjson.dumps({
        "event_id": str(uuid.uuid4()), "type": "MemoryStored", "schema_version": 1, "org_id": "org0",
        "agent_id": "agent0", "subject_id": memory_id, "occurred_at": datetime.fromtimestamp(ms / 1000, timezone.utc),
        "causation_id": None, "correlation_id": None, "idempotency_key": None, "actor": None,
        "data": {"text": f"memory {memory_id}", "importance": 5, "tags": [], "metadata": {}}})


def _connect(settings: Settings) -> psycopg.Connection:
    return psycopg.connect(database_url(settings), autocommit=True, options=f"-c search_path={settings.db_schema}")


def test_rows_of_each_month_land_in_its_partition_and_a_position_range_prunes(settings: Settings) -> None:
    # Given a ledger partition whose events span three months (ids as a ledger of that time holds them)
    migrate.upgrade(settings)
    log = open_log(settings)
    days = [(2026, 8, 3), (2026, 8, 20), (2026, 9, 9), (2026, 10, 1), (2026, 10, 30)]
    sids = [f"{_ms(*d)}-0" for d in days]
    log.load(0, [(sid, 1, _body(f"m{i}", stream_id_key(sid)[0])) for i, sid in enumerate(sids)])
    # When the archive projector archives them
    run_projection(settings, "archive", until_caught_up=True)
    # Then each row is in its month's partition, created by the projector before writing
    placed = sql(settings, "SELECT tableoid::regclass::text, stream_ms FROM event_archive ORDER BY stream_ms")
    assert [name for name, _ in placed] == [archive_months.month_table(y, m) for y, m, _ in days]
    with _connect(settings) as conn:
        held = dict(archive_months.months(conn))
        assert (held["event_archive_y2026m08"], held["event_archive_y2026m09"], held["event_archive_y2026m10"]) \
            == (2, 1, 2)
        # and history reads across the months as one sequence
        assert [r.position.stream_id for r in archive.read_from(conn, log, 0)] == sids
        # and a read of a range of positions within October scans October's partition alone
        args = archive._range_args(0, sids[3], sids[4])  # noqa: SLF001 - the statement reads use
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT count(*)" + archive._RANGE, args))  # noqa: SLF001
        assert set(re.findall(r"event_archive_y\d{4}m\d{2}", plan)) == {"event_archive_y2026m10"}
        assert archive.archive_count(conn, 0, sids[3], sids[4]) == 1
        # while a range from August on scans the three months
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN SELECT count(*)" + archive._RANGE,  # noqa: SLF001
                                                     archive._range_args(0, sids[0], sids[4])))  # noqa: SLF001
        assert len(set(re.findall(r"event_archive_y\d{4}m\d{2}", plan))) == 3
        # and a second write of an archived event still violates the unique key (position and id+month)
        [again] = archive.read_from(conn, log, 0, after=sids[0], until=sids[1])
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction(), conn.cursor() as cur:
            archive.insert(cur, [again])


_OLD_ROWS = """
INSERT INTO event_archive (event_id, partition, stream_ms, stream_seq, org_id, agent_id, subject_id,
                           subject_version, type, schema_version, occurred_at, body)
SELECT gen_random_uuid(), i %% 4, %(start)s::bigint + i * %(step)s::bigint, i %% 3, 'org' || i %% 5, 'agent0', 'm' || i, 1,
       'MemoryStored', 2, to_timestamp((%(start)s::bigint + i * %(step)s::bigint) / 1000.0), jsonb_build_object('i', i)
FROM generate_series(0, %(n)s - 1) i
"""


def test_migrating_a_non_partitioned_archive_keeps_every_row_in_its_month(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an archive of revision 0004 (one plain table) holding rows over 14 months
    migrate.upgrade(settings, "0004")
    start, step, n = _ms(2025, 11, 1), 3_600_000 * 7, 1500  # every 7 hours: Nov 2025 .. Dec 2026
    with _connect(settings) as conn:
        conn.execute(_OLD_ROWS, {"start": start, "step": step, "n": n})
        before = sum_digest(conn, settings.db_schema, "event_archive")
    # When it is migrated to the partitioned archive
    migrate.upgrade(settings)
    with _connect(settings) as conn:
        # Then every row is kept, unchanged
        assert sum_digest(conn, settings.db_schema, "event_archive") == before
        assert before.startswith(f"{n}:")
        # each in the partition of its month, every month from the first row's through next month present
        misplaced = [(t, ms) for t, ms in conn.execute(
            "SELECT tableoid::regclass::text, stream_ms FROM event_archive").fetchall()
            if t != archive_months.month_table(*archive_months.month_of(ms))]
        assert misplaced == []
        names = [name for name, _ in archive_months.months(conn)]
        assert names[0] == "event_archive_y2025m11" and len(names) >= 15
        assert sum(rows for _, rows in archive_months.months(conn)) == n
        # and a rebuild's plan estimates from the months' statistics (the parent has none of its own)
        for name, _ in archive_months.months(conn):  # as autovacuum does: the months, never the parent
            conn.execute(f'ANALYZE "{name}"')
        exact = archive.archive_count(conn, 1)
        monkeypatch.setattr(archive, "EXACT_BELOW", 100)
        assert exact == n // 4 and 0.5 * exact <= archive.archive_estimate(conn, 1) <= 2 * exact
        # and the keys still hold: a row at an archived position is refused
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO event_archive SELECT gen_random_uuid(), partition, stream_ms, stream_seq,"
                         " org_id, agent_id, subject_id, subject_version, type, schema_version, occurred_at, body"
                         " FROM event_archive LIMIT 1")
    # and the revision goes back down to one plain table with the same rows
    from alembic import command

    command.downgrade(migrate.alembic_config(settings), "0004")
    with _connect(settings) as conn:
        assert sum_digest(conn, settings.db_schema, "event_archive") == before
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('event_archive')").fetchone() \
            == ("r",)
