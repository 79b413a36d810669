"""The PostgreSQL read-model tables (SQLAlchemy Core), the target of Alembic revisions.

Tables are unqualified: a connection's `search_path` picks the namespace's schema, and a
rebuild points it at a shadow schema that is swapped in when complete.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    REAL,
    SmallInteger,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR, UUID

metadata = MetaData()
TS = DateTime(timezone=True)
# GIN indexes that projectors write a row at a time: a query reads the whole pending list of
# new entries, so keep it small (kB; migration 0008 says why and what it measured).
GIN_WRITTEN_ROW_BY_ROW = {"gin_pending_list_limit": 256}

projection_checkpoints = Table(
    "projection_checkpoints", metadata,
    Column("projection", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("stream_id", Text, nullable=False),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
)

projection_versions = Table(
    "projection_versions", metadata,
    Column("projection", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
)

dead_letters = Table(
    "dead_letters", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("projection", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("stream_id", Text, nullable=False),
    Column("event_id", Text),
    Column("event_type", Text),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("failed_at", TS, nullable=False, server_default=text("now()")),
    Column("redriven_at", TS),
    Index("dead_letters_open", "projection", "partition", postgresql_where=text("redriven_at IS NULL")),
)

event_archive = Table(
    "event_archive", metadata,
    Column("event_id", UUID(as_uuid=True), primary_key=True),
    Column("partition", SmallInteger, nullable=False),
    # The partition key (monthly ranges, migration 0005), so it is part of every unique key.
    Column("stream_ms", BigInteger, primary_key=True),
    Column("stream_seq", Integer, nullable=False),
    Column("org_id", Text, nullable=False),
    Column("agent_id", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("subject_version", Integer, nullable=False),
    Column("type", Text, nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("occurred_at", TS, nullable=False),
    Column("body", JSONB, nullable=False),
    Index("event_archive_position", "partition", "stream_ms", "stream_seq", unique=True),
    Index("event_archive_subject", "org_id", "subject_id", "partition", "stream_ms", "stream_seq"),
    Index("event_archive_agent_time", "org_id", "agent_id", "occurred_at"),
    postgresql_partition_by="RANGE (stream_ms)",
)

memories = Table(
    "memories", metadata,
    Column("org_id", Text, primary_key=True),
    Column("agent_id", Text, primary_key=True),
    Column("memory_id", Text, primary_key=True),
    Column("content", Text, nullable=False),
    Column("memory_type", Text, nullable=False),
    Column("tags", ARRAY(Text), nullable=False),
    Column("importance", REAL, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("session_id", Text),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("expires_at", TS),
    Column("version", Integer, nullable=False),
    Column("recall_count", Integer, nullable=False),
    Column("last_recalled_at", TS),
    # to_tsvector('english', content), filled by a trigger on INSERT and on a change of the
    # content only (migration 0006): a generated column was recomputed on every UPDATE.
    Column("search", TSVECTOR),
    Index("memories_org_recent", "org_id", "updated_at"),
    # By importance, then recency: the whole order a query asks for, not its first key (0009).
    Index("memories_org_importance", "org_id", "importance", "updated_at"),
    # A query naming an agent walks that agent's rows in its order; on `agent_id COLLATE "C"`,
    # which only the analysts' queries write (migration 0007 says why).
    Index("memories_agent_recent", "org_id", text('(agent_id COLLATE "C")'), "updated_at"),
    Index("memories_agent_importance", "org_id", text('(agent_id COLLATE "C")'), "importance", "updated_at"),
    Index("memories_session", "org_id", "session_id"),
    # The hierarchy's order, newest first by creation; summaries are too few to find by a walk (0010).
    Index("memories_org_created", "org_id", "created_at"),
    Index("memories_org_summaries", "org_id", "created_at", postgresql_where=text("memory_type = 'summary'")),
    # A pending list of 256 kB, not 4 MB: every query using a GIN index reads all of it (0008).
    Index("memories_tags", "tags", postgresql_using="gin", postgresql_with=GIN_WRITTEN_ROW_BY_ROW),
    Index("memories_search", "search", postgresql_using="gin", postgresql_with=GIN_WRITTEN_ROW_BY_ROW),
)

tag_stats = Table(
    "tag_stats", metadata,
    Column("org_id", Text, primary_key=True),
    Column("tag", Text, primary_key=True),
    Column("memories", Integer, nullable=False),
)

agent_stats = Table(
    "agent_stats", metadata,
    Column("org_id", Text, primary_key=True),
    Column("agent_id", Text, primary_key=True),
    Column("live_memories", Integer, nullable=False),
    Column("stored", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("forgotten", Integer, nullable=False),
    Column("expired", Integer, nullable=False),
    Column("recalls", Integer, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("first_event_at", TS, nullable=False),
    Column("last_event_at", TS, nullable=False),
)

sessions = Table(
    "sessions", metadata,
    Column("org_id", Text, primary_key=True),
    Column("agent_id", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("user_id", Text),
    Column("transcript", JSONB),
    Column("metadata", JSONB, nullable=False),
    Column("message_count", Integer, nullable=False),
    Column("ingested_at", TS, nullable=False),
    Column("status", Text, nullable=False),
    Column("summary", Text),
    Column("memory_ids", ARRAY(Text), nullable=False),
    Column("error", Text),
    Column("transcript_purged_at", TS),
    Column("version", Integer, nullable=False),
    Index("sessions_org_time", "org_id", "ingested_at"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("org_id", Text, primary_key=True),
    Column("key_id", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("agent_id", Text),
    Column("label", Text),
    Column("secret_hash", Text, nullable=False),
    Column("issued_at", TS, nullable=False),
    Column("issued_by", Text),
    Column("revoked_at", TS),
    Column("revoked_by", Text),
    Column("revoke_reason", Text),
    Column("partition", Integer, nullable=False),
    Column("stream_id", Text, nullable=False),
    Index("api_keys_key_id", "key_id"),
)

# Working memory (issue 17): every message of every conversation, and one row per conversation.
session_messages = Table(
    "session_messages", metadata,
    Column("org_id", Text, primary_key=True),
    Column("agent_id", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("seq", Integer, primary_key=True),  # the message's number in its session (its subject version)
    Column("role", Text, nullable=False),
    Column("content", Text, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("at", TS, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("stream_id", Text, nullable=False),
)

conversations = Table(
    "conversations", metadata,
    Column("org_id", Text, primary_key=True),
    Column("agent_id", Text, primary_key=True),
    Column("session_id", Text, primary_key=True),
    Column("status", Text, nullable=False),  # open, closed, summarized, failed
    Column("message_count", Integer, nullable=False),
    Column("started_at", TS, nullable=False),
    Column("last_message_at", TS, nullable=False),
    Column("closed_at", TS),
    Column("close_reason", Text),
    Column("digest", Text),  # the summary of the older part (ConversationSummarized)
    Column("digest_through", Integer),
    Column("summary", Text),  # the whole conversation's, after close (SessionSummarized)
    Column("memory_ids", ARRAY(Text), nullable=False),
    Column("error", Text),
    Column("transcript_purged_at", TS),
    Column("version", Integer, nullable=False),
    # Lookups by (org, session) without the agent, and the idle/retention scans.
    Index("conversations_org_session", "org_id", "session_id"),
    Index("conversations_open_idle", "last_message_at", postgresql_where=text("status = 'open'")),
)
