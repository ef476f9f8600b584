"""stored uploads counted per relying system (the upload quota reads one row, not every stored upload);
a client's uploads indexed by time (the per-minute upload count reads a range, not every upload)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

_OF_SYSTEM = ("FROM documents JOIN oauth_clients ON oauth_clients.client_id = documents.client_id "
              "WHERE oauth_clients.relying_system_id = relying_systems.id AND documents.deleted_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table('relying_systems') as batch:
        batch.add_column(sa.Column('stored_uploads', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('stored_upload_bytes', sa.BigInteger(), nullable=False, server_default='0'))
    op.execute(f"UPDATE relying_systems SET stored_uploads = (SELECT COUNT(*) {_OF_SYSTEM}), "
               f"stored_upload_bytes = (SELECT COALESCE(SUM(documents.size), 0) {_OF_SYSTEM})")
    with op.batch_alter_table('documents') as batch:
        batch.create_index('ix_documents_client_created', ['client_id', 'created_at'], unique=False)
        batch.drop_index('ix_documents_client_id')


def downgrade() -> None:
    with op.batch_alter_table('documents') as batch:
        batch.create_index('ix_documents_client_id', ['client_id'], unique=False)
        batch.drop_index('ix_documents_client_created')
    with op.batch_alter_table('relying_systems') as batch:
        batch.drop_column('stored_upload_bytes')
        batch.drop_column('stored_uploads')
