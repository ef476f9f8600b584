"""approval app: relying systems get a display name, web sessions their start, last use and browser

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('relying_systems') as batch:
        batch.add_column(sa.Column('display_name', sa.String(length=128), nullable=True))
    with op.batch_alter_table('web_sessions') as batch:
        batch.add_column(sa.Column('created_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('user_agent', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('web_sessions') as batch:
        batch.drop_column('user_agent')
        batch.drop_column('last_seen_at')
        batch.drop_column('created_at')
    with op.batch_alter_table('relying_systems') as batch:
        batch.drop_column('display_name')
