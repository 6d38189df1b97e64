"""the SLA outcome of each ticket, settled when it happens, so that reports aggregate in SQL

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("first_response_minutes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("first_response_breached", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("resolution_minutes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("resolution_breached", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for column in (
            "resolution_breached", "resolution_minutes", "first_response_breached",
            "first_response_minutes", "resolved_at",
        ):  # fmt: skip
            batch.drop_column(column)
