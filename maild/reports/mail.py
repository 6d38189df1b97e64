"""A report (or digest) as a manager's email: text that reads alone, HTML with the charts
inline by cid (no remote images, no scripts), Auto-Submitted: auto-generated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

from maild.compose import check_header_lines, loop_marker, wire_bytes
from maild.config import Config


def manager_mail(
    config: Config,
    *,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str,
    images: Mapping[str, bytes],
    now: datetime,
) -> tuple[str, bytes]:
    """(Message-ID, wire bytes) of multipart/alternative: text/plain, then multipart/related
    with the HTML and its PNG charts."""
    related = MIMEMultipart("related")
    related.attach(MIMEText(html, "html", "utf-8"))
    for name, png in images.items():
        image = MIMEImage(png, "png")
        image["Content-ID"] = f"<{name}>"
        image.add_header("Content-Disposition", "inline", filename=f"{name}.png")
        related.attach(image)
    mail = MIMEMultipart("alternative")
    mail.attach(MIMEText(text, "plain", "utf-8"))
    mail.attach(related)
    name, address = parseaddr(config.outbound.from_header)
    message_id = make_msgid(domain=config.mail_domain)
    mail["From"] = formataddr((name, address))
    mail["To"] = ", ".join(to)
    mail["Subject"] = subject
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = message_id
    mail["Auto-Submitted"] = "auto-generated"
    mail["X-Auto-Response-Suppress"] = "All"
    mail["X-Maild-Loop"] = loop_marker(config)
    mail["X-Loop"] = config.mailbox.address
    check_header_lines(mail)
    return message_id.strip("<>"), wire_bytes(mail)
