"""memories: the importance indexes carry the whole order a query asks for (importance, then recency)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 01:20:00

A query in order of importance sorts by `importance DESC, updated_at DESC, ...`. The
`(org_id, importance)` and `(org_id, agent, importance)` indexes gave the first key only, so
PostgreSQL read every row of the highest importance before it could return the newest 20 of
them, then every row of the next: importances are few (agents write 0.5, 0.8, 1.0), and a
group grows with the table. With 100 distinct importances on 1M memories the median query by
importance read 2,439 pages (2.3 ms); with `updated_at` in the index it walks the rows in the
order asked and stops at its limit (docs/benchmarks.md, "Importance groups").

Built without CONCURRENTLY, like 0007: on a large table writes to memories wait while they are
built; `memledger replay rebuild memories` builds them on a shadow instead.
"""

from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX memories_org_importance")
    op.execute("CREATE INDEX memories_org_importance ON memories (org_id, importance, updated_at)")
    op.execute("DROP INDEX memories_agent_importance")
    op.execute('CREATE INDEX memories_agent_importance ON memories (org_id, (agent_id COLLATE "C"), importance, updated_at)')


def downgrade() -> None:
    op.execute("DROP INDEX memories_agent_importance")
    op.execute('CREATE INDEX memories_agent_importance ON memories (org_id, (agent_id COLLATE "C"), importance)')
    op.execute("DROP INDEX memories_org_importance")
    op.execute("CREATE INDEX memories_org_importance ON memories (org_id, importance)")
