"""indexes for the ingest hot path: the ledger by Message-ID, pending outbox rows in order

The ledger lookup asks for this spool entry, this dedup key or this Message-ID in one query
(OR): without an index on message_id it read the whole ledger for every message. The
outbox's due rows are taken in id order; (state, id) finds them without a scan.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_inbound_messages_message_id", "inbound_messages", ["message_id"])
    op.create_index("ix_outbox_state_id", "outbox", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_state_id", table_name="outbox")
    op.drop_index("ix_inbound_messages_message_id", table_name="inbound_messages")
