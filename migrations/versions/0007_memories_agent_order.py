"""memories: per-agent indexes in the queries' two orders (recent, importance)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 21:00:00

A query naming an agent (most agents' queries do) could only walk the org's whole
`(org_id, updated_at)` or `(org_id, importance)` index and drop the other agents' rows, or
intersect bitmaps of the GIN indexes, whose posting lists hold every org's rows: both cost
in proportion to the table, not to the answer. With these two indexes a query for one agent
walks that agent's rows in the order asked and stops at its limit. Measured on 1M memories
with the bench's workload: pages read per query p50 2,431 -> 432, p99 19,585 -> 4,816.

The agent enters them as `agent_id COLLATE "C"`, which only the analysts' queries write
(`projections.query.MemoryQuery.sql`; equality of text is byte equality under any
deterministic collation, so the answers are the same). With plain `agent_id`, the planner
served the projector's key look-ups, `(org_id, agent_id, memory_id) IN (...)`, from one of
these on a table not yet analyzed (a new namespace: each look-up read every row of the
agent), which made the memories projector three times slower in the bench.

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
    op.execute('CREATE INDEX memories_agent_recent ON memories (org_id, (agent_id COLLATE "C"), updated_at)')
    op.execute('CREATE INDEX memories_agent_importance ON memories (org_id, (agent_id COLLATE "C"), importance)')


def downgrade() -> None:
    op.drop_index('memories_agent_importance', table_name='memories')
    op.drop_index('memories_agent_recent', table_name='memories')
