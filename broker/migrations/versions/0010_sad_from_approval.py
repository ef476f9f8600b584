"""a CSC SAD lives sad_seconds from the signer's approval: its own expiry column goes

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signing_requests') as batch:
        batch.drop_column('sad_expires_at')


def downgrade() -> None:
    with op.batch_alter_table('signing_requests') as batch:
        batch.add_column(sa.Column('sad_expires_at', sa.DateTime(timezone=True), nullable=True))
