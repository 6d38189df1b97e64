"""how long each later answer to the client took, against the ticket's target

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("response_minutes", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("response_breached", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("response_breached")
        batch.drop_column("response_minutes")
