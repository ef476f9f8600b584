"""signing requests and confirmation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:51:54.365973
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('activation_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code_hash')
    )
    with op.batch_alter_table('activation_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activation_codes_user_id'), ['user_id'], unique=False)

    op.create_table('approval_devices',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('counter', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('active', 'revoked', name='device_status', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('approval_devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approval_devices_user_id'), ['user_id'], unique=False)

    op.create_table('web_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_user_id'), ['user_id'], unique=False)

    op.create_table('webauthn_challenges',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('challenge', sa.LargeBinary(), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webauthn_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webauthn_challenges_user_id'), ['user_id'], unique=False)

    op.create_table('webauthn_credentials',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('sign_count', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('active', 'revoked', name='device_status', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webauthn_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webauthn_credentials_user_id'), ['user_id'], unique=False)

    op.create_table('signing_requests',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('credential_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('relying_system', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Enum('pending', 'approved', 'signed', 'rejected', 'expired', 'failed', 'cancelled', name='request_state', native_enum=False, length=32), nullable=False),
    sa.Column('hash_algorithm', sa.String(length=16), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('binding', sa.LargeBinary(length=32), nullable=False),
    sa.Column('verification_code', sa.String(length=4), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_via', sa.String(length=128), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=True),
    sa.Column('failure_reason', sa.String(length=255), nullable=True),
    sa.Column('unconfirmed', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['credential_id'], ['credentials.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signing_requests_credential_id'), ['credential_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_signing_requests_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_signing_requests_user_id'), ['user_id'], unique=False)

    op.create_table('request_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('digest', sa.LargeBinary(length=64), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'authorised', 'reserved', 'consumed', 'void', name='item_state', native_enum=False, length=32), nullable=False),
    sa.Column('reserved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signature', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['signing_requests.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'position', name='uq_request_items_position')
    )
    with op.batch_alter_table('request_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_request_items_request_id'), ['request_id'], unique=False)

    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failed_confirmations', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('credentials', schema=None) as batch_op:
        batch_op.drop_column('locked_until')
        batch_op.drop_column('failed_confirmations')

    with op.batch_alter_table('request_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_request_items_request_id'))

    op.drop_table('request_items')
    with op.batch_alter_table('signing_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signing_requests_user_id'))
        batch_op.drop_index(batch_op.f('ix_signing_requests_state'))
        batch_op.drop_index(batch_op.f('ix_signing_requests_credential_id'))

    op.drop_table('signing_requests')
    with op.batch_alter_table('webauthn_credentials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webauthn_credentials_user_id'))

    op.drop_table('webauthn_credentials')
    with op.batch_alter_table('webauthn_challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webauthn_challenges_user_id'))

    op.drop_table('webauthn_challenges')
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_user_id'))

    op.drop_table('web_sessions')
    with op.batch_alter_table('approval_devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approval_devices_user_id'))

    op.drop_table('approval_devices')
    with op.batch_alter_table('activation_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activation_codes_user_id'))

    op.drop_table('activation_codes')
