"""documents and request formats

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:21:02.104318
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('documents',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('media_type', sa.String(length=64), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_documents_client_id'), ['client_id'], unique=False)

    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('format', sa.String(length=16), server_default='raw', nullable=False))
        batch_op.add_column(sa.Column('payload', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.drop_column('payload')
        batch_op.drop_column('format')

    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_documents_client_id'))

    op.drop_table('documents')
