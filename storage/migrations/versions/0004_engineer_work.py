"""how a ticket ended, which ticket it was merged into, what the client has sent of the
checklist so far; mail outside any ticket

An engineer's mail that names no ticket still gets an answer (why nothing was done), so an
outbox row no longer always belongs to a ticket's message.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("close_reason", sa.String(32), nullable=True))
        batch.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("checklist", sa.String(255), nullable=False, server_default="")
        )
        batch.create_foreign_key(
            "fk_tickets_merged_into_id_tickets", "tickets", ["merged_into_id"], ["id"]
        )
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("message_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("message_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("fk_tickets_merged_into_id_tickets", type_="foreignkey")
        batch.drop_column("checklist")
        batch.drop_column("merged_into_id")
        batch.drop_column("close_reason")
