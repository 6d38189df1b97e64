"""Build real-shaped test messages in a line (full fixtures live in tests/fixtures/mail)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid


def build_mail(
    *,
    sender: str = "Пётр Сидоров <sidorov@stroymontazh.ru>",
    to: str = "info@sis.ru",
    subject: str = "Не открывается отчёт",
    body: str = "Добрый день!\nCubisio 3.2.1 падает при открытии отчёта.",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    cc: str | None = None,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, bytes, str]] | None = None,
    charset: str = "utf-8",
) -> bytes:
    mail = EmailMessage(policy=SMTP)
    mail["From"] = sender
    mail["To"] = to
    if cc:
        mail["Cc"] = cc
    mail["Subject"] = subject
    mail["Date"] = format_datetime(datetime(2026, 3, 3, 10, 15, tzinfo=UTC))
    mail["Message-ID"] = message_id or make_msgid(domain="client.example")
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    if references:
        mail["References"] = references
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(body, charset=charset)
    for filename, data, content_type in attachments or []:
        maintype, subtype = content_type.split("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes()
