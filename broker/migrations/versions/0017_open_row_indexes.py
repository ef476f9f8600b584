"""indexes that lead with what the hot paths compare for equality: open requests, their hashes, due
webhooks and stored uploads are read without reading every finished one, nor every other request's
hashes (SQLite's planner has no statistics)

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

# (table, index, columns) made, and (table, index, columns) they replace.
_MADE = (
    ("signing_requests", "ix_signing_requests_rs_state", ["relying_system", "state", "expires_at"]),
    ("signing_requests", "ix_signing_requests_user_state", ["user_id", "state", "expires_at"]),
    ("signing_requests", "ix_signing_requests_state_sad", ["state", "sad_hash"]),
    ("signing_requests", "ix_signing_requests_blobs_ended", ["blobs", "ended_at"]),
    ("webhook_deliveries", "ix_webhook_deliveries_due", ["state", "next_attempt_at"]),
    ("documents", "ix_documents_deleted_retained", ["deleted_at", "retained_from"]),
    ("request_items", "ix_request_items_state_request", ["state", "request_id"]),
    ("access_tokens", "ix_access_tokens_expires_at", ["expires_at"]),  # the expired ones are deleted
)
_REPLACED = (
    ("signing_requests", "ix_signing_requests_user_id", ["user_id"]),
    ("signing_requests", "ix_signing_requests_state", ["state"]),
    ("signing_requests", "ix_signing_requests_blobs", ["blobs"]),
    ("webhook_deliveries", "ix_webhook_deliveries_state", ["state"]),
    ("webhook_deliveries", "ix_webhook_deliveries_next_attempt_at", ["next_attempt_at"]),
    ("documents", "ix_documents_retained_from", ["retained_from"]),
    ("request_items", "ix_request_items_state", ["state"]),
)


def upgrade() -> None:
    for table, name, columns in _MADE:
        op.create_index(name, table, columns)
    for table, name, _ in _REPLACED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for table, name, columns in _REPLACED:
        op.create_index(name, table, columns)
    for table, name, _ in _MADE:
        op.drop_index(name, table_name=table)
