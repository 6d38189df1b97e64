"""contracts mirrored from the config, the SLA a ticket was opened under, and the
scheduler's once-only sends and state

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contracts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("domains", sa.Text(), nullable=False, server_default=""),
        sa.Column("addresses", sa.Text(), nullable=False, server_default=""),
        sa.Column("terms", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("contract_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sla_terms", sa.JSON(), nullable=True))
        batch.create_foreign_key(
            "fk_tickets_contract_id_contracts", "contracts", ["contract_id"], ["id"]
        )
    op.create_table(
        "scheduled_sends",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("ticket_id", "kind", "key"),
    )
    op.create_table(
        "scheduler_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduler_state")
    op.drop_table("scheduled_sends")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("fk_tickets_contract_id_contracts", type_="foreignkey")
        batch.drop_column("sla_terms")
        batch.drop_column("contract_id")
    op.drop_table("contracts")
