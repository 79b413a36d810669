"""embeddings read model (pgvector), where the vector extension is available

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 12:00:00

The `vector` extension is created in schema `public` (once per database, shared by every
namespace; dropping a namespace's schema must not drop it), so the SQL names its type and
operators `public.vector`, `OPERATOR(public.<=>)`. The column has no fixed dimension: the
dimension is the model's, and the embeddings projection creates the HNSW index (on
`embedding::public.vector(N)`) when it claims an empty read model for its model.

On a server without pgvector this revision creates nothing: `memledger migrate` succeeds and
says that semantic search is unavailable (projections/postgres/search_reads.py tells).
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_TABLES = """
CREATE TABLE memory_search (
    org_id text NOT NULL,
    agent_id text NOT NULL,
    memory_id text NOT NULL,
    content text NOT NULL,
    tags text[] NOT NULL,
    importance real NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz,
    content_hash bytea NOT NULL,
    embedding public.vector NOT NULL,
    search tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    PRIMARY KEY (org_id, agent_id, memory_id)
);
CREATE INDEX memory_search_text ON memory_search USING gin (search);
CREATE INDEX memory_search_tags ON memory_search USING gin (tags);
CREATE INDEX memory_search_org_time ON memory_search (org_id, created_at);
CREATE TABLE embedding_space (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    space text NOT NULL,
    dimension integer NOT NULL
);
CREATE TABLE embedding_cache (
    space text NOT NULL,
    content_hash bytea NOT NULL,
    embedding public.vector NOT NULL,
    PRIMARY KEY (space, content_hash)
);
"""


def vector_available() -> bool:
    row = op.get_bind().execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    return row is not None


def upgrade() -> None:
    if not vector_available():
        return
    # Two namespaces migrating at once would race on CREATE EXTENSION (a unique violation).
    op.execute("SELECT pg_advisory_xact_lock(hashtext('memledger: create extension vector'))")
    op.execute("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public")
    for statement in filter(str.strip, _TABLES.split(";")):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS memory_search, embedding_space, embedding_cache")
