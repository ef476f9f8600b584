"""approval authenticators lifecycle: WebAuthn authenticators get a name and a revocation time,
web sessions name the authenticator that opened them, sign-in challenges may have no user

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webauthn_credentials') as batch:
        batch.add_column(sa.Column('name', sa.String(length=128), nullable=False,
                                   server_default='browser authenticator'))
        batch.add_column(sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
    # Existing sessions name no authenticator, so revoking one could not end them: sign everyone out.
    op.execute(sa.text('DELETE FROM web_sessions'))
    with op.batch_alter_table('web_sessions') as batch:
        batch.add_column(sa.Column('authenticator_id', sa.String(length=255), nullable=True))
        batch.create_foreign_key('fk_web_sessions_authenticator_id', 'webauthn_credentials',
                                 ['authenticator_id'], ['id'])
        batch.create_index(batch.f('ix_web_sessions_authenticator_id'), ['authenticator_id'], unique=False)
    with op.batch_alter_table('webauthn_challenges') as batch:
        batch.alter_column('user_id', existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    op.execute(sa.text('DELETE FROM webauthn_challenges WHERE user_id IS NULL'))
    with op.batch_alter_table('webauthn_challenges') as batch:
        batch.alter_column('user_id', existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table('web_sessions') as batch:
        batch.drop_index(batch.f('ix_web_sessions_authenticator_id'))
        batch.drop_constraint('fk_web_sessions_authenticator_id', type_='foreignkey')
        batch.drop_column('authenticator_id')
    with op.batch_alter_table('webauthn_credentials') as batch:
        batch.drop_column('revoked_at')
        batch.drop_column('name')
