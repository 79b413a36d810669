"""memories.search: filled by a trigger only when the content changes, not a generated column

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 15:00:00

A stored generated column is recomputed on every UPDATE of its row, and an upsert computes it
for the proposed row too: `to_tsvector('english', content)` ran for every recall, importance
or tag change of a memory, which made it most of what writing the memories table costs
(docs/benchmarks.md, issue 18). The column keeps its values and its GIN index; a trigger
fills it on INSERT and on an UPDATE that changes the content.

The trigger function lives in schema `public` (once per database, like the vector extension
of 0004), not in the namespace's schema: a rebuild moves its shadow's tables into the live
schema and drops the shadow schema, which would drop a function of its own, and with it the
moved table's triggers. Creating it needs CREATE on schema `public`.
"""

from __future__ import annotations

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

FUNCTION = "public.memledger_memories_search"


def upgrade() -> None:
    # Two namespaces migrating at once would race on CREATE OR REPLACE FUNCTION.
    op.execute("SELECT pg_advisory_xact_lock(hashtext('memledger: memories search function'))")
    op.execute(f"""CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search := pg_catalog.to_tsvector('english', NEW.content);
    RETURN NEW;
END $$""")
    op.execute("ALTER TABLE memories ALTER COLUMN search DROP EXPRESSION")
    op.execute(f"CREATE TRIGGER memories_search_insert BEFORE INSERT ON memories FOR EACH ROW"
               f" EXECUTE FUNCTION {FUNCTION}()")
    op.execute(f"CREATE TRIGGER memories_search_update BEFORE UPDATE OF content ON memories FOR EACH ROW"
               f" WHEN (OLD.content IS DISTINCT FROM NEW.content) EXECUTE FUNCTION {FUNCTION}()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS memories_search_update ON memories")
    op.execute("DROP TRIGGER IF EXISTS memories_search_insert ON memories")
    op.execute("ALTER TABLE memories DROP COLUMN search")
    op.execute("ALTER TABLE memories ADD COLUMN search tsvector"
               " GENERATED ALWAYS AS (to_tsvector('english', content)) STORED")
    op.execute("CREATE INDEX memories_search ON memories USING gin (search)")
    # The function in `public` may serve other namespaces: it stays.
