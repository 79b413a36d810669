"""memories: per-agent indexes in the queries' two orders (recent, importance)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:00:00

A query naming an agent (most agents' queries do) could only walk the org's whole
`(org_id, updated_at)` or `(org_id, importance)` index and drop the other agents' rows, or
intersect bitmaps of the GIN indexes, whose posting lists hold every org's rows: both cost
in proportion to the table, not to the answer. At 1M memories the bench's uncached p99 was
150 ms against 2.7 ms at 10k (docs/benchmarks.md, issue 18). With these two indexes a
query for one agent walks that agent's rows in the order asked and stops at its limit.

Built without CONCURRENTLY (a migration runs in a transaction): on a large table, writes to
memories wait while they are built; `memledger replay rebuild memories` builds them on a
shadow instead, without stopping reads or writes.
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('memories_agent_recent', 'memories', ['org_id', 'agent_id', 'updated_at'], unique=False)
    op.create_index('memories_agent_importance', 'memories', ['org_id', 'agent_id', 'importance'], unique=False)


def downgrade() -> None:
    op.drop_index('memories_agent_importance', table_name='memories')
    op.drop_index('memories_agent_recent', table_name='memories')
