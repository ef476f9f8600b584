"""document retention

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blobs', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_signing_requests_blobs'), ['blobs'], unique=False)
    # Requests from before: their files are still on disk, for housekeeping to take in hand.
    op.execute("UPDATE signing_requests SET blobs = 'live' WHERE format <> 'raw' AND payload IS NOT NULL")

    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retained_from', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE documents SET retained_from = created_at")
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.alter_column('retained_from', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index(batch_op.f('ix_documents_retained_from'), ['retained_from'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_documents_retained_from'))
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('retained_from')

    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signing_requests_blobs'))
        batch_op.drop_column('ended_at')
        batch_op.drop_column('blobs')
