"""GIN indexes written row by row keep a pending list of at most 256 kB, not 4 MB

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 01:00:00

A GIN index with `fastupdate` (PostgreSQL's default) puts new entries in an unsorted
pending list and merges them into the index only when the list passes
`gin_pending_list_limit` (4 MB by default), or at a vacuum. Every query that uses the index
reads the whole list, row by row. The projectors write `memories` (and `memory_search`) a
row at a time, so between merges a query on tags or on words read up to 512 pages more than
its answer needed: on 100k memories filled by INSERTs, the tags index held a pending list of
472 pages and the slowest queries of the bench's workload took 10-11 ms, 3.6 ms once the
list was merged (docs/benchmarks.md, "GIN pending lists"). With 256 kB a query reads at most
32 pages of it (p99 4.0 ms there), and each merge is small, where a 4 MB merge stalled the
one insert that set it off. Merging more often costs the memories projector PostgreSQL time:
42.5-44.8 -> 45.2-45.8 us per event, the same events/s on one process and 7% fewer on two
(`memledger bench projectors -p memories`); 64 kB (the smallest limit) read 8 pages at most
(p99 3.6 ms) but cost 47-48 us per event and 10% on two processes.

The setting is the index's own (a storage parameter): a rebuild's shadow re-creates its
indexes from their definitions, which carry it.
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# memory_search exists only where pgvector is installed (0004): IF EXISTS.
INDEXES = ("memories_tags", "memories_search", "memory_search_text", "memory_search_tags")
LIMIT_KB = 256


def upgrade() -> None:
    for name in INDEXES:
        op.execute(f"ALTER INDEX IF EXISTS {name} SET (gin_pending_list_limit = {LIMIT_KB})")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"ALTER INDEX IF EXISTS {name} RESET (gin_pending_list_limit)")
