"""initial read models

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 12:32:33.511954
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_stats',
    sa.Column('org_id', sa.Text(), nullable=False),
    sa.Column('agent_id', sa.Text(), nullable=False),
    sa.Column('live_memories', sa.Integer(), nullable=False),
    sa.Column('stored', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('forgotten', sa.Integer(), nullable=False),
    sa.Column('expired', sa.Integer(), nullable=False),
    sa.Column('recalls', sa.Integer(), nullable=False),
    sa.Column('sessions', sa.Integer(), nullable=False),
    sa.Column('first_event_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_event_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'agent_id')
    )
    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('projection', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Text(), nullable=False),
    sa.Column('event_id', sa.Text(), nullable=True),
    sa.Column('event_type', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('failed_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('redriven_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('dead_letters_open', 'dead_letters', ['projection', 'partition'], unique=False,
                    postgresql_where=sa.text('redriven_at IS NULL'))
    op.create_table('event_archive',
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('partition', sa.SmallInteger(), nullable=False),
    sa.Column('stream_ms', sa.BigInteger(), nullable=False),
    sa.Column('stream_seq', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Text(), nullable=False),
    sa.Column('agent_id', sa.Text(), nullable=False),
    sa.Column('subject_id', sa.Text(), nullable=False),
    sa.Column('subject_version', sa.Integer(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('schema_version', sa.SmallInteger(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    op.create_index('event_archive_agent_time', 'event_archive', ['org_id', 'agent_id', 'occurred_at'], unique=False)
    op.create_index('event_archive_position', 'event_archive', ['partition', 'stream_ms', 'stream_seq'], unique=True)
    op.create_index('event_archive_subject', 'event_archive',
                    ['org_id', 'subject_id', 'partition', 'stream_ms', 'stream_seq'], unique=False)
    op.create_table('memories',
    sa.Column('org_id', sa.Text(), nullable=False),
    sa.Column('agent_id', sa.Text(), nullable=False),
    sa.Column('memory_id', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('memory_type', sa.Text(), nullable=False),
    sa.Column('tags', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('importance', sa.REAL(), nullable=False),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('session_id', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('recall_count', sa.Integer(), nullable=False),
    sa.Column('last_recalled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('search', postgresql.TSVECTOR(), sa.Computed("to_tsvector('english', content)", persisted=True),
              nullable=True),
    sa.PrimaryKeyConstraint('org_id', 'agent_id', 'memory_id')
    )
    op.create_index('memories_org_importance', 'memories', ['org_id', 'importance'], unique=False)
    op.create_index('memories_org_recent', 'memories', ['org_id', 'updated_at'], unique=False)
    op.create_index('memories_search', 'memories', ['search'], unique=False, postgresql_using='gin')
    op.create_index('memories_session', 'memories', ['org_id', 'session_id'], unique=False)
    op.create_index('memories_tags', 'memories', ['tags'], unique=False, postgresql_using='gin')
    op.create_table('projection_checkpoints',
    sa.Column('projection', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('projection', 'partition')
    )
    op.create_table('projection_versions',
    sa.Column('projection', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('projection')
    )
    op.create_table('sessions',
    sa.Column('org_id', sa.Text(), nullable=False),
    sa.Column('agent_id', sa.Text(), nullable=False),
    sa.Column('session_id', sa.Text(), nullable=False),
    sa.Column('user_id', sa.Text(), nullable=True),
    sa.Column('transcript', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('message_count', sa.Integer(), nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('memory_ids', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('transcript_purged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'agent_id', 'session_id')
    )
    op.create_index('sessions_org_time', 'sessions', ['org_id', 'ingested_at'], unique=False)
    op.create_table('tag_stats',
    sa.Column('org_id', sa.Text(), nullable=False),
    sa.Column('tag', sa.Text(), nullable=False),
    sa.Column('memories', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'tag')
    )


def downgrade() -> None:
    op.drop_table('tag_stats')
    op.drop_index('sessions_org_time', table_name='sessions')
    op.drop_table('sessions')
    op.drop_table('projection_versions')
    op.drop_table('projection_checkpoints')
    op.drop_index('memories_tags', table_name='memories', postgresql_using='gin')
    op.drop_index('memories_session', table_name='memories')
    op.drop_index('memories_search', table_name='memories', postgresql_using='gin')
    op.drop_index('memories_org_recent', table_name='memories')
    op.drop_index('memories_org_importance', table_name='memories')
    op.drop_table('memories')
    op.drop_index('event_archive_subject', table_name='event_archive')
    op.drop_index('event_archive_position', table_name='event_archive')
    op.drop_index('event_archive_agent_time', table_name='event_archive')
    op.drop_table('event_archive')
    op.drop_index('dead_letters_open', table_name='dead_letters', postgresql_where=sa.text('redriven_at IS NULL'))
    op.drop_table('dead_letters')
    op.drop_table('agent_stats')
