"""an index for the per relying system rate limit

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_signing_requests_rs_created', 'signing_requests', ['relying_system', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_signing_requests_rs_created', table_name='signing_requests')
