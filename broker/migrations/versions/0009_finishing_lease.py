"""a finishing lease on signing requests: one worker at a time builds a request's documents

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signing_requests') as batch:
        batch.add_column(sa.Column('finisher', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('finishing_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('signing_requests') as batch:
        batch.drop_column('finishing_until')
        batch.drop_column('finisher')
