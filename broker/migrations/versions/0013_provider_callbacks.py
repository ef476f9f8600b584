"""provider callbacks: each provider's call back recorded once (idempotent delivery)

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'provider_callbacks',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('provider', sa.String(length=32), nullable=False),
        sa.Column('callback_id', sa.String(length=191), nullable=False),
        sa.Column('transaction', sa.String(length=128), nullable=False),
        sa.Column('request_id', sa.String(length=64), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('provider', 'callback_id', name='uq_provider_callbacks_provider_callback'),
    )
    op.create_index('ix_provider_callbacks_request_id', 'provider_callbacks', ['request_id'])


def downgrade() -> None:
    op.drop_index('ix_provider_callbacks_request_id', table_name='provider_callbacks')
    op.drop_table('provider_callbacks')
