"""several processes and machines on one database: the shared spool, the IMAP position,
and what each running process last reported

`spool_messages` is the inbound spool when the database is PostgreSQL: a source commits the
row before it acknowledges, workers claim rows with SELECT ... FOR UPDATE SKIP LOCKED and
delete them in the transaction that stores the message. `imap_positions` replaces the
per-mailbox JSON file of the local spool, so that another machine can take a mailbox over.
`maild_processes` is the heartbeat that `maild status` reads.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spool_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("spool_id", sa.String(64), nullable=False, unique=True),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope_from", sa.String(320), nullable=True),
        sa.Column("recipients", sa.Text(), nullable=False, server_default=""),
        sa.Column("peer", sa.String(255), nullable=False, server_default=""),
        sa.Column("message_id", sa.String(998), nullable=True),
        sa.Column("refs", sa.Text(), nullable=False, server_default=""),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=True),
        sa.Column("large_file", sa.String(255), nullable=True),
    )
    op.create_index("ix_spool_messages_message_id", "spool_messages", ["message_id"])
    op.create_table(
        "imap_positions",
        sa.Column("mailbox", sa.String(255), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "maild_processes",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("maild_processes")
    op.drop_table("imap_positions")
    op.drop_index("ix_spool_messages_message_id", table_name="spool_messages")
    op.drop_table("spool_messages")
