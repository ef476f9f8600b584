"""webhook deliveries

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:32:57.684476
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('relying_system_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'delivered', 'failed', name='delivery_state', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['relying_system_id'], ['relying_systems.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_next_attempt_at'), ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_state'), ['state'], unique=False)

    with op.batch_alter_table('relying_systems', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_secret', sa.String(length=128), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('relying_systems', schema=None) as batch_op:
        batch_op.drop_column('webhook_secret')

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_state'))
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_request_id'))
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_next_attempt_at'))

    op.drop_table('webhook_deliveries')
