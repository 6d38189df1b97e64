"""the Telegram bot's intake: where getUpdates got to, and each chat's last message

`telegram_positions` holds, per bot, the next update to ask for: an update is confirmed to
Telegram only by asking from past it, which maild does once the update is in the spool.
`telegram_chats` holds each chat's last message spooled, so that the next one answers it
(In-Reply-To) and the chat stays one conversation; and the mail address the chat's user
proved with a mailed code (`/email`), whose mail with a ticket's token joins the chat's
tickets.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telegram_positions",
        sa.Column("bot_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("next_update_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "telegram_chats",
        sa.Column("chat_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("last_message_id", sa.String(998), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_email", sa.String(320), nullable=True),
        sa.Column("pending_email", sa.String(320), nullable=True),
        sa.Column("pending_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("codes_day", sa.String(10), nullable=True),
        sa.Column("codes_today", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_telegram_chats_linked_email", "telegram_chats", ["linked_email"])


def downgrade() -> None:
    op.drop_index("ix_telegram_chats_linked_email", table_name="telegram_chats")
    op.drop_table("telegram_chats")
    op.drop_table("telegram_positions")
