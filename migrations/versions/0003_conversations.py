"""working memory: session messages and conversations

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('session_messages',
    sa.Column('org_id', sa.Text(), nullable=False),
    sa.Column('agent_id', sa.Text(), nullable=False),
    sa.Column('session_id', sa.Text(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'agent_id', 'session_id', 'seq')
    )
    op.create_table('conversations',
    sa.Column('org_id', sa.Text(), nullable=False),
    sa.Column('agent_id', sa.Text(), nullable=False),
    sa.Column('session_id', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('message_count', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_message_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('close_reason', sa.Text(), nullable=True),
    sa.Column('digest', sa.Text(), nullable=True),
    sa.Column('digest_through', sa.Integer(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('memory_ids', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('transcript_purged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'agent_id', 'session_id')
    )
    op.create_index('conversations_org_session', 'conversations', ['org_id', 'session_id'], unique=False)
    op.create_index('conversations_open_idle', 'conversations', ['last_message_at'], unique=False,
                    postgresql_where=sa.text("status = 'open'"))


def downgrade() -> None:
    op.drop_index('conversations_open_idle', table_name='conversations',
                  postgresql_where=sa.text("status = 'open'"))
    op.drop_index('conversations_org_session', table_name='conversations')
    op.drop_table('conversations')
    op.drop_table('session_messages')
