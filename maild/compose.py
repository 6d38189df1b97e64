"""Outgoing mail: templates rendered and wrapped in headers that keep threads and stop loops."""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import encoders
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.policy import SMTPUTF8, compat32
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from maild.config import Config
from parsers.message import header_text
from parsers.reachability import chat_of_address
from parsers.types import AttachmentInfo

_WIRE = compat32.clone(linesep="\r\n", max_line_length=78)
NO_SUBJECT = {"ru": "(без темы)", "en": "(no subject)"}
_BREAK_NOT_FOLDING = re.compile(r"\r(?!\n[ \t])|\n(?![ \t])")
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)

ITEM_LABELS = {
    "ru": {
        "version": "версия продукта Cubisio (например, 3.2.1 или номер сборки)",
        "environment": "рабочее окружение: операционная система, браузер, СУБД и их версии",
        "scenario": "сценарий: по шагам, что вы делали перед тем, как возникла проблема",
        "error_text": "точный текст ошибки (скопируйте его из окна или консоли)",
        "screenshots": "снимки экрана с ошибкой",
        "logs": "файлы журналов (логи) приложения",
    },
    "en": {
        "version": "the Cubisio version (for example 3.2.1 or the build number)",
        "environment": "the environment: operating system, browser, DBMS and their versions",
        "scenario": "the scenario: step by step, what you did before the problem appeared",
        "error_text": "the exact error text (copy it from the window or the console)",
        "screenshots": "screenshots of the error",
        "logs": "the application log files",
    },
}
KIND_LABELS = {
    "ru": {"dump": "дамп памяти", "log": "журнал", "screenshot": "снимок экрана",
           "archive": "архив", "config": "конфигурация", "document": "документ",
           "other": "файл"},
    "en": {"dump": "memory dump", "log": "log", "screenshot": "screenshot", "archive": "archive",
           "config": "configuration", "document": "document", "other": "file"},
}  # fmt: skip


CLOSE_LABELS = {
    "ru": {"solved": "решено", "workaround": "обходное решение",
           "fixed_in_version": "исправлено в версии", "out_of_scope": "проектные работы заказчика",
           "not_our_software": "не наше ПО", "not_reproducible": "не воспроизводится",
           "no_information": "нет информации", "conduct": "нарушение норм общения",
           "merged": "объединено"},
    "en": {"solved": "solved", "workaround": "workaround", "fixed_in_version": "fixed in a version",
           "out_of_scope": "customer's project work", "not_our_software": "not our software",
           "not_reproducible": "not reproducible", "no_information": "no information",
           "conduct": "breach of etiquette", "merged": "merged"},
}  # fmt: skip
CHANNEL_LABELS = {
    "ru": {"email": "почта", "phone": "телефон", "telegram": "Telegram", "web": "форма на сайте",
           "dedicated": "выделенный канал", "other": "другой канал"},
    "en": {"email": "e-mail", "phone": "phone", "telegram": "Telegram", "web": "web form",
           "dedicated": "dedicated channel", "other": "other channel"},
}  # fmt: skip


def filesize(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("templates", ""),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["filesize"] = filesize
    environment.filters["localtime"] = _localtime
    return environment


def render(name: str, language: str, *, in_chat: bool = False, **context: Any) -> str:
    """`in_chat`: the client reads this in a Telegram chat, where "reply to this email"
    means "write here"."""
    template = template_environment().get_template(f"{name}.{language}.txt.j2")
    return template.render(
        item_labels=ITEM_LABELS[language], kind_labels=KIND_LABELS[language],
        close_labels=CLOSE_LABELS[language], channel_labels=CHANNEL_LABELS[language],
        in_chat=in_chat, **context,
    )  # fmt: skip


@jinja2.pass_context
def _localtime(context: jinja2.runtime.Context, moment: datetime) -> str:
    return local_time(moment, context.get("timezone") or "Europe/Moscow")


def local_time(moment: datetime, zone: str) -> str:
    """`03.03.2026 17:00 MSK`-style: engineers read deadlines in their own time."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%d.%m.%Y %H:%M} {local.tzname()}"


def choose_language(default: str, *texts: str) -> str:
    """Answer in English only to someone who clearly wrote in English; Russian otherwise."""
    sample = " ".join(texts)[:4000]
    if _CYRILLIC.search(sample):
        return "ru"
    if default == "ru" and _LATIN.search(sample):
        return "en"
    return default


def new_message_id(config: Config, ticket_id: int) -> str:
    return f"maild.{ticket_id}.{secrets.token_hex(10)}@{config.mail_domain}"


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    message_id: str
    subject: str
    recipients: tuple[str, ...]
    envelope_from: str
    text: str
    raw: bytes


def build_mail(
    config: Config,
    *,
    to: Sequence[tuple[str, str]],
    subject: str,
    text: str,
    message_id: str,
    in_reply_to: str | None,
    references: Sequence[str],
    now: datetime,
    auto_submitted: str | None,
    from_name: str | None = None,
    cc: Sequence[tuple[str, str]] = (),
    files: Sequence[OutgoingFile] = (),
) -> Message:
    """Headers every maild message carries (SPEC: Auto-Submitted, token, own id, references).

    Built with the compat32 classes: the header-registry policy folds every header through
    its full parser, which made composing an acknowledgement cost more than parsing a
    request (bench/ingest.py).
    """
    everyone = (*to, *cc)
    if is_international(everyone):
        mail: Message = _international_message(text, files)
    else:
        mail = _plain_message(text, files)
    subject = header_text(subject)
    default_name, from_address = parseaddr(config.outbound.from_header)
    mail["From"] = _mailbox(from_name if from_name is not None else default_name, from_address)
    mail["To"] = ", ".join(_mailbox(name, address) for name, address in to)
    if cc:
        mail["Cc"] = ", ".join(_mailbox(name, address) for name, address in cc)
    mail["Reply-To"] = config.mailbox.address
    plain_subject = subject.isascii() or isinstance(mail, EmailMessage)
    mail["Subject"] = subject if plain_subject else Header(subject, "utf-8").encode()
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        mail["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        mail["References"] = " ".join(f"<{ref}>" for ref in references[-20:])
    if auto_submitted is not None:  # a person's answer carries none (SPEC)
        mail["Auto-Submitted"] = auto_submitted
    # Exchange and Outlook: do not answer this message with out-of-office notices.
    mail["X-Auto-Response-Suppress"] = "All"
    mail["X-Maild-Loop"] = loop_marker(config)
    # procmail's convention, understood by many list managers and autoresponders.
    mail["X-Loop"] = config.mailbox.address
    check_header_lines(mail)
    return mail


class HeaderInjectionError(ValueError):
    """A header value we set would have started a header line of its own: a bug, never sent."""


def check_header_lines(mail: Message) -> None:
    """Every line break in a header value must be folding (CRLF + space): the last guard
    against a value from mail or config adding a header line to what maild sends."""
    for name, value in mail.items():
        text = str(value)
        if ("\r" in text or "\n" in text) and _BREAK_NOT_FOLDING.search(text):
            raise HeaderInjectionError(f"header {name} carries a line break that is not folding")


@dataclass(frozen=True, slots=True)
class OutgoingFile:
    """An attachment relayed from an engineer's mail to the client."""

    filename: str
    content_type: str
    data: bytes


def _file_name(file: OutgoingFile) -> str:
    """The filename as a header parameter: one line, whatever was stored."""
    return header_text(file.filename).strip() or "attachment"


def _plain_message(text: str, files: Sequence[OutgoingFile] = ()) -> Message:
    """text/plain in UTF-8, quoted-printable: readable in any client, safe through any MTA."""
    body = _qp_text(text)
    if not files:
        return body
    mail = MIMEMultipart("mixed")
    mail.attach(body)
    for file in files:
        maintype, _, subtype = file.content_type.partition("/")
        part = MIMEBase(maintype or "application", subtype or "octet-stream")
        part.set_payload(file.data)
        encoders.encode_base64(part)
        filename = _file_name(file)
        if filename.isascii():
            part.add_header("Content-Disposition", "attachment", filename=filename)
            part.set_param("name", filename)
        else:  # RFC 2231 for the standard, an encoded word for Outlook and older clients
            rfc2231 = ("utf-8", "", filename)
            part.add_header("Content-Disposition", "attachment", filename=rfc2231)
            part.set_param("name", Header(filename, "utf-8").encode())
        mail.attach(part)
    return mail


def _qp_text(text: str) -> Message:
    """A text/plain UTF-8 part, quoted-printable by binascii (C): the same headers and the
    same decoded text as `set_payload` with a QP utf-8 Charset, whose per-character encoder in
    Python cost more than rendering the template."""
    part = Message()
    part["MIME-Version"] = "1.0"
    part["Content-Type"] = 'text/plain; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    part.set_payload(binascii.b2a_qp(lines.encode("utf-8"), istext=True).decode("ascii"))
    return part


def is_international(to: Sequence[tuple[str, str]]) -> bool:
    return not all(address.isascii() for _, address in to)


def _international_message(text: str, files: Sequence[OutgoingFile] = ()) -> EmailMessage:
    """RFC 6531/6532 recipients (jdöe@mächine.example) get raw UTF-8 headers (SMTPUTF8)."""
    mail = EmailMessage(policy=SMTPUTF8)
    mail.set_content(text, charset="utf-8", cte="quoted-printable")
    for file in files:
        maintype, _, subtype = file.content_type.partition("/")
        mail.add_attachment(
            file.data, maintype=maintype or "application", subtype=subtype or "octet-stream",
            filename=_file_name(file),
        )  # fmt: skip
    return mail


def wire_bytes(mail: Message) -> bytes:
    """The message as it goes on the wire: CRLF line ends, UTF-8 headers only for SMTPUTF8."""
    if isinstance(mail, EmailMessage):
        return mail.as_bytes(policy=SMTPUTF8)
    if not mail.is_multipart():
        try:
            return _single_part_bytes(mail)
        except UnicodeEncodeError:  # a header we did not encode ourselves: the generator's job
            pass
    return mail.as_bytes(policy=_WIRE)


def _single_part_bytes(mail: Message) -> bytes:
    """What the compat32 generator writes for our one-part mail (ASCII headers, a QP body),
    without its per-header `Header` re-parse, which cost as much as composing the mail."""
    headers = "".join(_folded(name, str(value)) for name, value in mail.items())
    body = str(mail.get_payload()).replace("\r\n", "\n").replace("\n", "\r\n")
    return (headers + "\r\n" + body).encode("ascii")


def _folded(name: str, value: str) -> str:
    """`Name: value` CRLF, folded at spaces to lines of at most 78 characters where the
    value allows (RFC 5322 2.2.3); folds already in the value (encoded words) are kept."""
    words = _FOLD.sub(" ", value).split(" ")
    lines, line = [], f"{name}:"
    for word in words:
        if line != f"{name}:" and len(line) + 1 + len(word) > _WIRE_LINE:
            lines.append(line)
            line = ""
        line = f"{line} {word}" if line or not lines else f" {word}"
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


_WIRE_LINE = 78
_FOLD = re.compile(r"\r?\n[ \t]")


def _mailbox(name: str, address: str) -> str:
    """`Name <address>` with the name RFC 2047-encoded when it is not ASCII.

    An internationalised address (RFC 6531, jdöe@mächine.example) stays as UTF-8 and goes
    out with SMTPUTF8 (see maild.outbound).
    """
    name = header_text(name).strip()
    if not name:
        return address
    if name.isascii():
        return formataddr((name, "x@x")).replace("<x@x>", f"<{address}>")
    return f"{Header(name, 'utf-8').encode()} <{address}>"


def loop_marker(config: Config) -> str:
    """Seen on an incoming message, it means our own mail came back to us."""
    return config.mailbox.address


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """Whom an automatic reply answers, and in which ticket."""

    ticket_id: int
    token: str
    subject: str
    language: str
    client: tuple[str, str]
    answering: str | None
    references: Sequence[str]


def acknowledgement(
    config: Config,
    reply: ReplyTo,
    *,
    attachments: Sequence[AttachmentInfo],
    missing: Sequence[str],
    now: datetime,
) -> OutgoingMail:
    return _auto_reply(
        config, reply, "acknowledgement", now,
        attachments=[item for item in attachments if not item.inline and not item.refused],
        missing=list(missing), **_refusals(config, attachments),
    )  # fmt: skip


def attachment_refusal(
    config: Config, reply: ReplyTo, *, attachments: Sequence[AttachmentInfo], now: datetime
) -> OutgoingMail:
    """A follow-up gets no acknowledgement, but a refused file must not go unmentioned."""
    return _auto_reply(config, reply, "attachment_refused", now, **_refusals(config, attachments))


def engineer_notice(
    config: Config,
    template: str,
    *,
    ticket_id: int,
    token: str,
    subject: str,
    to: Sequence[tuple[str, str]],
    answering: str | None,
    now: datetime,
    headline: str | None = None,
    references: Sequence[str] = (),
    from_name: str | None = None,
    **context: Any,
) -> OutgoingMail:
    """A notice to engineers about a ticket: from maild, in the config's language; a reply
    to it comes back to the support address and threads by its Message-ID."""
    language = config.tickets.language
    headline = headline or NOTICE_SUBJECTS[template][language]
    text = render(
        template, language, token=token, subject=subject, ticket_id=ticket_id,
        support_address=config.mailbox.address, headline=headline,
        timezone=config.calendar.timezone,
        comment_address=config.mailbox.comment_address or f"#comment → {config.mailbox.address}",
        **context,
    )  # fmt: skip
    message_id = new_message_id(config, ticket_id)
    full_subject = f"{token} {headline}: {subject}"
    chain = [*references, answering] if answering else list(references)
    mail = build_mail(
        config, to=list(to), subject=full_subject, text=text, message_id=message_id,
        in_reply_to=answering, references=chain, now=now, auto_submitted="auto-generated",
        from_name=from_name,
    )  # fmt: skip
    recipients = tuple(address for _, address in to)
    return OutgoingMail(message_id, full_subject, recipients, "", text, wire_bytes(mail))


NOTICE_SUBJECTS = {
    "bounce_notice": {"ru": "письмо клиенту не доставлено", "en": "mail to the client bounced"},
    "new_ticket": {"ru": "Новое обращение", "en": "New ticket"},
    "follow_up": {"ru": "Ответ клиента", "en": "Client wrote"},
    "reopened": {"ru": "Обращение открыто снова", "en": "Ticket reopened"},
    "on_behalf": {"ru": "Зарегистрировано инженером", "en": "Registered by an engineer"},
    "assigned": {"ru": "Назначено вам", "en": "Assigned to you"},
    "comment_notice": {"ru": "Внутренний комментарий", "en": "Internal comment"},
    "command_result": {"ru": "Команды", "en": "Commands"},
    "escalation": {"ru": "Эскалация", "en": "Escalation"},
    "escalation_breach": {"ru": "Срок SLA нарушен", "en": "SLA breached"},
}


def _refusals(config: Config, attachments: Sequence[AttachmentInfo]) -> dict[str, Any]:
    return {
        "refused": [item for item in attachments if item.refused],
        "max_attachment": config.artifacts.max_attachment_bytes,
        "max_message": config.artifacts.max_message_bytes,
    }


def _auto_reply(
    config: Config, reply: ReplyTo, template: str, now: datetime, **context: Any
) -> OutgoingMail:
    text = render(
        template,
        reply.language,
        in_chat=chat_of_address(reply.client[1]) is not None,
        client_name=reply.client[0],
        token=reply.token,
        subject=reply.subject,
        support_address=config.mailbox.address,
        **context,
    )
    message_id = new_message_id(config, reply.ticket_id)
    full_subject = f"{reply.token} {reply.subject}"
    answering = reply.answering
    mail = build_mail(
        config,
        to=[reply.client],
        subject=full_subject,
        text=text,
        message_id=message_id,
        in_reply_to=answering,
        references=[*reply.references, answering] if answering else reply.references,
        now=now,
        auto_submitted="auto-replied",
    )
    # RFC 3834 3.3: an automatic response goes out with a null return path, so that no
    # bounce of it can start a loop.
    raw = wire_bytes(mail)
    return OutgoingMail(message_id, full_subject, (reply.client[1],), "", text, raw)


def reminder(
    config: Config, reply: ReplyTo, *, since: datetime, close_at: datetime, now: datetime
) -> OutgoingMail:
    """The client is asked again for what the ticket waits on (cooperation, issue 15)."""
    return _auto_reply(
        config, reply, "reminder", now, since=since, close_at=close_at,
        timezone=config.calendar.timezone,
    )  # fmt: skip


def closing_notice(config: Config, reply: ReplyTo, *, reason: str, now: datetime) -> OutgoingMail:
    """A ticket closed by maild itself (no_information after silence), in the regulation's
    words: the same text an engineer's #close sends."""
    return _auto_reply(
        config, reply, "closed", now, reason=reason, reopen_days=config.tickets.reopen_days
    )


def client_mail(
    config: Config,
    reply: ReplyTo,
    *,
    engineer_text: str,
    blocks: Sequence[str],
    cc: Sequence[tuple[str, str]],
    files: Sequence[OutgoingFile],
    from_name: str,
    now: datetime,
) -> OutgoingMail:
    """What an engineer sends a client: the engineer's own words (no quoted history), the
    blocks of the commands (#request, #close) and the ticket's footer, from the support
    address under the engineer's name. A person's answer, so bounces come back to us."""
    text = render(
        "answer", reply.language, in_chat=chat_of_address(reply.client[1]) is not None,
        engineer_text=engineer_text, blocks=list(blocks),
        token=reply.token, subject=reply.subject, support_address=config.mailbox.address,
    )  # fmt: skip
    message_id = new_message_id(config, reply.ticket_id)
    full_subject = f"{reply.token} {reply.subject}"
    answering = reply.answering
    mail = build_mail(
        config, to=[reply.client], cc=cc, subject=full_subject, text=text,
        message_id=message_id, in_reply_to=answering,
        references=[*reply.references, answering] if answering else reply.references,
        now=now, auto_submitted=None, from_name=from_name, files=files,
    )  # fmt: skip
    recipients = (reply.client[1], *(address for _, address in cc))
    return OutgoingMail(
        message_id, full_subject, recipients, config.mailbox.address, text, wire_bytes(mail)
    )


def sender_name(engineer_name: str, config: Config) -> str:
    """`Иван Иванов (SIS Support)`: the client sees who answered, and that it is support."""
    support_name = parseaddr(config.outbound.from_header)[0] or config.mailbox.display_name
    return f"{engineer_name} ({support_name})" if engineer_name else support_name
