"""an index on request_items.state: the reclaimer looks for reserved hashes on every round

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_request_items_state', 'request_items', ['state'])


def downgrade() -> None:
    op.drop_index('ix_request_items_state', table_name='request_items')
