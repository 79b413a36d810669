"""api keys read model

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('org_id', sa.Text(), nullable=False),
    sa.Column('key_id', sa.Text(), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('agent_id', sa.Text(), nullable=True),
    sa.Column('label', sa.Text(), nullable=True),
    sa.Column('secret_hash', sa.Text(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_by', sa.Text(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.Text(), nullable=True),
    sa.Column('revoke_reason', sa.Text(), nullable=True),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('stream_id', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'key_id')
    )
    # Authentication looks a key up by its id alone (the secret names no org).
    op.create_index('api_keys_key_id', 'api_keys', ['key_id'], unique=False)


def downgrade() -> None:
    op.drop_index('api_keys_key_id', table_name='api_keys')
    op.drop_table('api_keys')
