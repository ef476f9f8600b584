"""delegated credentials: mode and provider reference; the provider's transaction on requests

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('credentials') as batch:
        batch.add_column(sa.Column('mode', sa.Enum('hosted', 'delegated', name='credential_mode', native_enum=False,
                                                   length=32), nullable=False, server_default='hosted'))
        batch.add_column(sa.Column('provider_ref', sa.JSON(), nullable=True))
    with op.batch_alter_table('signing_requests') as batch:
        batch.add_column(sa.Column('provider_transaction', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('signing_requests') as batch:
        batch.drop_column('provider_transaction')
    with op.batch_alter_table('credentials') as batch:
        batch.drop_column('provider_ref')
        batch.drop_column('mode')
