"""relying systems, clients, CSC authorisations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 15:11:21.218332
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('relying_systems',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('webhook_allowlist', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('oauth_clients',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('relying_system_id', sa.Integer(), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('status', sa.Enum('active', 'disabled', name='client_status', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['relying_system_id'], ['relying_systems.id'], ),
    sa.PrimaryKeyConstraint('client_id')
    )
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_clients_relying_system_id'), ['relying_system_id'], unique=False)

    op.create_table('relying_system_units',
    sa.Column('relying_system_id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['relying_system_id'], ['relying_systems.id'], ),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], ),
    sa.PrimaryKeyConstraint('relying_system_id', 'unit_id')
    )
    op.create_table('access_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_clients.client_id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_tokens_client_id'), ['client_id'], unique=False)

    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('request_fingerprint', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('sad_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('sad_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint('uq_requests_idempotency', ['client_id', 'idempotency_key'])
        batch_op.create_unique_constraint('uq_signing_requests_sad_hash', ['sad_hash'])



def downgrade() -> None:
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        # WARNING: constraint name is None; this directive will fail as
        # rendered.  Add a name, or use a naming convention; see
        # https://alembic.sqlalchemy.org/en/latest/naming.html
        batch_op.drop_constraint('uq_signing_requests_sad_hash', type_='unique')
        batch_op.drop_constraint('uq_requests_idempotency', type_='unique')
        batch_op.drop_column('sad_expires_at')
        batch_op.drop_column('sad_hash')
        batch_op.drop_column('request_fingerprint')
        batch_op.drop_column('idempotency_key')
        batch_op.drop_column('client_id')

    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_tokens_client_id'))

    op.drop_table('access_tokens')
    op.drop_table('relying_system_units')
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oauth_clients_relying_system_id'))

    op.drop_table('oauth_clients')
    op.drop_table('relying_systems')
