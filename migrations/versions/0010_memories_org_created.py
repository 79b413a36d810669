"""memories: indexes in the hierarchy's order, (org_id, created_at), and for summaries alone

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 02:20:00

`query hierarchy` lists an org's nodes newest first by creation time. Without an index in
that order each level sorted every memory of the org to keep its newest rows: 150-260 ms on
1M memories (250k per org). With it, and each level limited on its own before the levels
are merged (`projections.hierarchy.HierarchyQuery.sql`), a level walks the index and stops
(docs/benchmarks.md, "The hierarchy"). Summaries are one per processed session, too few for
a walk of every memory to find them soon: they get a partial index of their own.

Built without CONCURRENTLY, like 0007: on a large table writes to memories wait while it is
built; `memledger replay rebuild memories` builds it on a shadow instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("memories_org_created", "memories", ["org_id", "created_at"])
    op.create_index("memories_org_summaries", "memories", ["org_id", "created_at"],
                    postgresql_where=sa.text("memory_type = 'summary'"))


def downgrade() -> None:
    op.drop_index("memories_org_summaries", table_name="memories")
    op.drop_index("memories_org_created", table_name="memories")
