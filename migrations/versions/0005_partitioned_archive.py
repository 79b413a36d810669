"""event_archive partitioned by month of stream time

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 14:30:00

The archive becomes `PARTITION BY RANGE (stream_ms)`, one partition per calendar month (UTC),
named `event_archive_yYYYYmMM`. Every existing row is moved, in this revision's transaction:
the old table is renamed aside, the partitioned one created with the months from the oldest
row through next month, the rows copied, the indexes built once over the filled months, and
the old table dropped. Writers create later months themselves (`ledger.archive_months.ensure_months`).

PostgreSQL requires the partition key in every unique key, so the primary key becomes
(event_id, stream_ms); the position key (partition, stream_ms, stream_seq) already holds it.
A second write of an archived event has the same position, so it still violates both.
"""

from __future__ import annotations

from datetime import date

from alembic import op
from sqlalchemy import text

from ledger.archive_months import month_bounds, month_table

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_COLUMNS = """
    event_id uuid NOT NULL,
    partition smallint NOT NULL,
    stream_ms bigint NOT NULL,
    stream_seq integer NOT NULL,
    org_id text NOT NULL,
    agent_id text NOT NULL,
    subject_id text NOT NULL,
    subject_version integer NOT NULL,
    type text NOT NULL,
    schema_version smallint NOT NULL,
    occurred_at timestamptz NOT NULL,
    body jsonb NOT NULL
"""
_INDEXES = ("CREATE UNIQUE INDEX event_archive_position ON event_archive (partition, stream_ms, stream_seq)",
            "CREATE INDEX event_archive_subject ON event_archive"
            " (org_id, subject_id, partition, stream_ms, stream_seq)",
            "CREATE INDEX event_archive_agent_time ON event_archive (org_id, agent_id, occurred_at)")
_OLD_INDEXES = ("event_archive_pkey", "event_archive_position", "event_archive_subject", "event_archive_agent_time")
# The months from the oldest archived row (or now) through next month, in UTC.
_MONTHS = """
SELECT m::date FROM generate_series(
  date_trunc('month', coalesce((SELECT min(to_timestamp(stream_ms / 1000.0)) FROM event_archive_unpartitioned), now())
               AT TIME ZONE 'UTC'),
  date_trunc('month', greatest((SELECT max(to_timestamp(stream_ms / 1000.0)) FROM event_archive_unpartitioned), now())
               AT TIME ZONE 'UTC') + interval '1 month',
  interval '1 month') m
"""


def _aside() -> None:
    op.execute("ALTER TABLE event_archive RENAME TO event_archive_unpartitioned")
    for index in _OLD_INDEXES:  # index names are per schema: free them for the new table's
        op.execute(f"ALTER INDEX IF EXISTS {index} RENAME TO {index}_unpartitioned")


def _create_month(first_day: date) -> None:
    # Named and bounded as the writers name and bound the months they create.
    name, (low, high) = month_table(first_day.year, first_day.month), month_bounds(first_day.year, first_day.month)
    op.execute(f'CREATE TABLE "{name}" PARTITION OF event_archive FOR VALUES FROM ({low}) TO ({high})')


def upgrade() -> None:
    _aside()
    op.execute(f"CREATE TABLE event_archive ({_COLUMNS}) PARTITION BY RANGE (stream_ms)")
    for (first_day,) in op.get_bind().execute(text(_MONTHS)).all():
        _create_month(first_day)
    op.execute("INSERT INTO event_archive SELECT * FROM event_archive_unpartitioned")
    # Built once over the moved rows: far cheaper than maintaining them row by row.
    op.execute("ALTER TABLE event_archive ADD PRIMARY KEY (event_id, stream_ms)")
    for statement in _INDEXES:
        op.execute(statement)
    op.execute("DROP TABLE event_archive_unpartitioned")


def downgrade() -> None:
    op.execute("ALTER TABLE event_archive RENAME TO event_archive_partitioned")
    for index in _OLD_INDEXES:
        op.execute(f"ALTER INDEX IF EXISTS {index} RENAME TO {index}_partitioned")
    op.execute(f"CREATE TABLE event_archive ({_COLUMNS})")
    op.execute("INSERT INTO event_archive SELECT * FROM event_archive_partitioned")
    op.execute("ALTER TABLE event_archive ADD PRIMARY KEY (event_id)")
    for statement in _INDEXES:
        op.execute(statement)
    op.execute("DROP TABLE event_archive_partitioned")  # its months with it
