"""indexes for the reports: tickets by the moments a period selects on, messages by time

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 17:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TICKET_MOMENTS = ("created_at", "closed_at", "resolved_at", "first_response_at")


def upgrade() -> None:
    for column in _TICKET_MOMENTS:
        op.create_index(f"ix_tickets_{column}", "tickets", [column])
    op.create_index("ix_messages_kind_created", "messages", ["kind", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_kind_created", table_name="messages")
    for column in _TICKET_MOMENTS:
        op.drop_index(f"ix_tickets_{column}", table_name="tickets")
