"""artifact listings, flags and purging; refused and unpacked attachments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("artifacts") as batch:
        batch.add_column(sa.Column("listing", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("flags", sa.String(length=255), nullable=False, server_default=""))
        batch.add_column(sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("attachments") as batch:
        batch.alter_column("artifact_sha256", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column("size", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("refused_reason", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("container", sa.String(length=255), nullable=True))
    # Attachments stored before this revision: their size is their artifact's.
    op.execute(
        "UPDATE attachments SET size = (SELECT size FROM artifacts"
        " WHERE artifacts.sha256 = attachments.artifact_sha256)"
        " WHERE artifact_sha256 IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("attachments") as batch:
        batch.drop_column("container")
        batch.drop_column("refused_reason")
        batch.drop_column("size")
        batch.alter_column("artifact_sha256", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("purged_at")
        batch.drop_column("flags")
        batch.drop_column("listing")
