"""An engineer's reply to a maild notice, byte for byte as Thunderbird or Outlook builds it.

End-to-end tests send these through SMTP, so the parser meets the real shapes: Thunderbird's
format=flowed text with a Russian "пишет:" attribution and "> " quotes, Outlook's HTML reply
with an unquoted "От:/Отправлено:/Кому:/Тема:" block under the new text.

Thunderbird (115/128, Russian UI, plain-text compose, reply above the quote) is modelled on
its sources (comm-central mailnews/compose/src/MimeMessage, MimePart, MimeEncoder, and
jsmime's header emitter): header order and folding, RFC 2047 words chosen B or Q per chunk,
RFC 2231 file names with every byte %-escaped, base64 in 72-column lines, the multipart
preamble and boundary shape, the signature ("-- ") left out of the quote.

Outlook (2016 / Microsoft 365 through on-premises Exchange EXCH01, Russian UI, HTML compose)
follows what Exchange puts on the wire: utf-8 encoded words cut at fixed byte counts (also
inside a letter), "CC:" in capitals, a bare address written as `"a@b" <a@b>`, Thread-Index,
_000_/_004_ boundaries, quoted-printable text and HTML, attachments with Content-Description,
size= and creation-date=.

The engineer sits in Moscow (UTC+3 all year): attributions and Thunderbird's Date are in
that time. A reply is dated a few minutes after the message it answers (now, if that has no
Date), so replies to a notice sent by a test clock stay in order.
"""

from __future__ import annotations

import base64
import email
import email.header
import email.utils
import html
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message

__all__ = ["outlook_reply", "thunderbird_reply"]

Attachment = tuple[str, bytes, str]

MOSCOW = timezone(timedelta(hours=3), "MSK")
REPLY_DELAY = timedelta(minutes=4, seconds=17)
CRLF = "\r\n"
EXCHANGE_HOST = "EXCH01.sis.ru"


# --- the message being answered ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Original:
    message_id: str | None  # with angle brackets
    references: tuple[str, ...]
    subject: str
    sender: tuple[str, str]
    reply_to: tuple[tuple[str, str], ...]
    to: tuple[tuple[str, str], ...]
    cc: tuple[tuple[str, str], ...]
    date: datetime | None
    text: str
    thread_index: bytes | None


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value)


def _decode(value: str | None) -> str:
    if not value:
        return ""
    decoded = email.header.make_header(email.header.decode_header(_unfold(str(value))))
    return " ".join(str(decoded).split())


def _addresses(message: Message, name: str) -> tuple[tuple[str, str], ...]:
    values = [_unfold(str(value)) for value in message.get_all(name, [])]
    return tuple(
        (_decode(display), address)
        for display, address in email.utils.getaddresses(values)
        if address
    )


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    text = payload.decode(part.get_content_charset() or "utf-8", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if str(part.get_param("format", "")).lower() == "flowed":
        text = re.sub(r"(?m) \n(?!>)", " ", text)  # soft breaks, enough for our notices
    return text


def _html_text(markup: str) -> str:
    markup = re.sub(r"(?is)<(head|style|script)\b.*?</\1>", "", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</h\d>", "\n", markup)
    text = html.unescape(re.sub(r"<[^>]+>", "", markup)).replace("\xa0", " ")
    return re.sub(r"\n{3,}", "\n\n", text)


def _original_text(message: Message) -> str:
    html_part = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() == "text/plain":
            return _part_text(part).strip("\n")
        if part.get_content_type() == "text/html" and html_part is None:
            html_part = part
    return _html_text(_part_text(html_part)).strip("\n") if html_part else ""


def _read_original(raw: bytes) -> _Original:
    message = email.message_from_bytes(raw)
    ids = re.findall(r"<[^<>\s]+>", _unfold(str(message.get("message-id", ""))))
    references = tuple(re.findall(r"<[^<>\s]+>", _unfold(str(message.get("references", "")))))
    senders = _addresses(message, "from")
    try:
        date = email.utils.parsedate_to_datetime(str(message["date"])) if message["date"] else None
    except (TypeError, ValueError):
        date = None
    try:
        thread_index = base64.b64decode(str(message.get("thread-index", "")), validate=True)
    except ValueError:
        thread_index = None
    return _Original(
        message_id=ids[0] if ids else None,
        references=references,
        subject=_decode(message.get("subject")),
        sender=senders[0] if senders else ("", ""),
        reply_to=_addresses(message, "reply-to"),
        to=_addresses(message, "to"),
        cc=_addresses(message, "cc"),
        date=date if date is None or date.tzinfo else date.replace(tzinfo=UTC),
        text=_original_text(message),
        thread_index=thread_index or None,
    )


def _parse_list(value: str | None) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()
    return tuple((name, address) for name, address in email.utils.getaddresses([value]) if address)


def _recipients(source: _Original, to: str | None) -> tuple[tuple[str, str], ...]:
    if to is not None:
        return _parse_list(to)
    return source.reply_to or ((source.sender,) if source.sender[1] else ())


def _reply_time(source: _Original) -> datetime:
    return source.date + REPLY_DELAY if source.date else datetime.now(UTC)


def _references(source: _Original) -> list[str]:
    own = [source.message_id] if source.message_id else []
    return [ref for ref in source.references if ref not in own] + own


def _top_headers(extra_headers: dict[str, str] | None) -> str:
    """What the receiving MX prepends, folded at "; " the way authentication milters do."""
    lines = []
    for name, value in (extra_headers or {}).items():
        first, *rest = " ".join(value.split()).split("; ")
        current = f"{name}: {first}"
        for piece in rest:
            if len(current) + len("; ") + len(piece) > 78:
                lines.append(current + ";")
                current = "\t" + piece
            else:
                current += "; " + piece
        lines.append(current)
    return "".join(line + CRLF for line in lines)


# --- Thunderbird ---------------------------------------------------------------------------


class _JsmimeEmitter:
    """jsmime's HeaderEmitter (comm-central mailnews/mime/jsmime): greedy folding at 78
    characters, RFC 2047 words picked B or Q per chunk, never splitting a UTF-8 letter."""

    B_PRELUDE = "=?UTF-8?B?"
    Q_PRELUDE = "=?UTF-8?Q?"
    Q_FORBIDDEN = "\"#$%&'(),.:;<=>?@[\\]^_`{|}~"
    PHRASE_SPECIALS = ',()<>[]:;@."'

    def __init__(self, soft_margin: int = 78, hard_margin: int = 998) -> None:
        self._soft = soft_margin
        self._hard = hard_margin
        self._out: list[str] = []
        self._line = ""
        self._break = 0

    def text(self) -> str:
        self._commit()
        return "".join(self._out)

    def _commit(self, count: int | None = None) -> None:
        if count is None:
            first, rest = self._line.rstrip(), ""
        else:
            first, rest = self._line[:count].rstrip(), " " + self._line[count:].lstrip()
        self._out.append(first + CRLF)
        self._line = rest
        self._break = 0

    def _reserve(self, length: int) -> bool:
        if len(self._line) + length <= self._soft:
            return True
        if self._break > 0:
            self._commit(self._break)
            if len(self._line) + length <= self._soft:
                return True
        if len(self._line) + length <= self._hard:
            return True
        if self._line:
            self._commit(len(self._line))
        return len(self._line) + length <= self._hard

    def add_text(self, text: str, may_break: bool) -> None:
        if not self._reserve(len(text)):
            raise ValueError(f"cannot fold {text!r}")
        self._line += text
        if may_break:
            self._break = len(self._line)
            if not text.endswith(" "):
                self._line += " "

    def _add_quotable(self, text: str, qchars: str, may_break: bool) -> None:
        if not text:
            return
        quoted = text[0] == '"' and text[-1] == '"'
        if not quoted and qchars and any(char in qchars for char in text):
            text = '"' + re.sub(r'(["\\])', r"\\\1", text) + '"'
        self.add_text(text, may_break)

    def _add_phrase(self, text: str, qchars: str, may_break: bool) -> None:
        text = re.sub(r"[ \t\r\n]+", " ", text)
        if re.search(r"[^\x20-\x7e]", text):
            self._encode_phrase(text, may_break)
            return
        if len(self._line) + len(text) < self._soft:
            try:
                self._add_quotable(text, qchars, may_break)
            except ValueError:
                pass
            else:
                if self._break == 0 and " " in text and not self._line.endswith('"'):
                    self._break = self._line.rfind(" ")
                return
        words = text.split(" ")
        for index, word in enumerate(words):
            self._add_quotable(word, qchars, may_break if index == len(words) - 1 else True)

    def _add_word(self, data: bytes, use_q: bool, may_break: bool) -> None:
        if not use_q:
            token = self.B_PRELUDE + base64.b64encode(data).decode("ascii") + "?="
        else:
            token = self.Q_PRELUDE
            for byte in data:
                char = chr(byte)
                if byte < 0x20 or byte >= 0x7F or char in self.Q_FORBIDDEN:
                    token += f"={byte:02X}"
                else:
                    token += "_" if char == " " else char
            token += "?="
        self.add_text(token, may_break)

    def _encode_phrase(self, text: str, may_break: bool) -> None:
        data = text.encode("utf-8")
        if not self._reserve(len(self.B_PRELUDE) + 10):
            self._commit(len(self._line))
        b_len = q_len = start = 0
        max_chars = self._soft - len(self._line) - (len(self.B_PRELUDE) + 2)
        index = 0
        while index < len(data):
            b_inc = 4 if (index - start) % 3 == 0 else 0
            byte = data[index]
            special = byte < 0x20 or byte >= 0x7F or chr(byte) in self.Q_FORBIDDEN
            q_inc = 3 if special else 1
            if b_len + b_inc > max_chars and q_len + q_inc > max_chars:
                while data[index] & 0xC0 == 0x80:
                    index -= 1
                self._add_word(data[start:index], b_len >= q_len, True)
                start = index
                b_len = q_len = 0
                max_chars = self._soft - len(self.B_PRELUDE) - 3
                continue
            b_len += b_inc
            q_len += q_inc
            index += 1
        self._add_word(data[start:], b_len >= q_len, may_break)

    # high level, one call per header

    def header_name(self, name: str) -> None:
        self._line = self._line.rstrip()
        if self._line:
            self._commit()
        self.add_text(f"{name}: ", False)

    def unstructured(self, name: str, value: str) -> None:
        self.header_name(name)
        if value:
            self._add_phrase(value, "", False)

    def addresses(self, name: str, addresses: tuple[tuple[str, str], ...]) -> None:
        self.header_name(name)
        for index, (display, address) in enumerate(addresses):
            if index:
                self.add_text(", ", True)
            if display:
                self._reserve(len(display) + len(address) + 3)
                self._add_phrase(display, self.PHRASE_SPECIALS, True)
                self.add_text("<", False)
            local, at, domain = address.rpartition("@")
            self._add_quotable(local if at else address, '()<>[]:;@\\," !', False)
            self.add_text((at + domain if at else "") + (">" if display else ""), False)

    def message_ids(self, name: str, ids: list[str]) -> None:
        self.header_name(name)
        for index, item in enumerate(ids):
            self.add_text(item, index < len(ids) - 1)


_TB_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TB_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _jsmime_date(moment: datetime) -> str:
    """jsmime's addDate: day of month not padded, local offset."""
    offset = moment.utcoffset() or timedelta()
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return (
        f"{_TB_DAYS[moment.weekday()]}, {moment.day} {_TB_MONTHS[moment.month - 1]} "
        f"{moment.year} {moment:%H:%M:%S} {zone}"
    )


WRAP = 72  # mailnews.wraplength


def _flowed(line: str, prefix: str = "") -> list[str]:
    """One hard line as Thunderbird sends it with format=flowed (RFC 3676): wrapped at 72
    columns with a trailing space on every soft break, space-stuffed where needed."""
    line = line.rstrip() if line != "-- " else line
    if not line:
        return [prefix.rstrip()]
    out = []
    while len(prefix) + len(line) > WRAP:
        room = WRAP - len(prefix)
        cut = line.rfind(" ", 0, room + 1)
        if cut <= 0:
            cut = line.find(" ", room)
            if cut < 0:
                break
        out.append(line[: cut + 1])
        line = line[cut + 1 :]
    out.append(line)
    stuffed = []
    for chunk in out:
        if not prefix and (chunk.startswith((" ", ">")) or chunk.startswith("From ")):
            chunk = " " + chunk
        stuffed.append(prefix + chunk)
    return stuffed


def _without_signature(text: str) -> str:
    """mail.strip_sig_on_reply: the quote ends above the "-- " line."""
    lines = text.split("\n")
    return "\n".join(lines[: lines.index("-- ")] if "-- " in lines else lines).rstrip("\n")


def _thunderbird_body(body: str, source: _Original) -> str:
    lines: list[str] = []
    for line in body.replace("\r\n", "\n").strip("\n").split("\n"):
        lines.extend(_flowed(line))
    lines.append("")
    when = (source.date or _reply_time(source)).astimezone(MOSCOW)
    author = source.sender[0] or source.sender[1]
    lines.extend(_flowed(f"{when:%d.%m.%Y %H:%M}, {author} пишет:"))
    for line in _without_signature(source.text).split("\n"):
        lines.extend(_flowed(line, "> "))
    return CRLF.join(lines) + CRLF


def _tb_boundary() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "------------" + "".join(secrets.choice(alphabet) for _ in range(24))


def _tb_base64(data: bytes) -> str:
    """MimeEncoder._encodeBase64: 72 columns, and an empty line when it comes out even."""
    encoded = base64.b64encode(data).decode("ascii")
    lines = [encoded[start : start + 72] for start in range(0, len(encoded) + 1, 72)]
    return "".join(line + CRLF for line in lines)


def _rfc2047_param(value: str) -> str:
    """nsIMimeConverter.encodeMimePartIIStr_UTF8(value, false, 0, 72), unfolded."""
    if not re.search(r"[^\x20-\x7e]", value):
        return value
    emitter = _JsmimeEmitter(soft_margin=72)
    emitter.unstructured("", value)  # a fake header name of length 0, as the converter does
    folded = emitter.text()[len(": ") :]
    return " ".join(line.strip() for line in folded.split(CRLF) if line.strip())


def _rfc2231_param(name: str, value: str) -> str:
    """MsgUtils.rfc2231ParamFolding: every byte %-escaped (ESCAPE_ALL), cut below 75 columns
    and never inside a UTF-8 letter."""
    limit = 75
    data = value.encode("utf-8")
    escaped = any(byte >= 0x80 for byte in data)
    text = "".join(f"%{byte:02X}" for byte in data) if escaped else value.replace('"', '\\"')
    name_len = len(name) + 5
    if len(text) + name_len + len("UTF-8") < limit:
        return f"{name}*=UTF-8''{text}" if escaped else f'{name}="{text}"'
    pieces = []
    start, counter = 0, 0
    while start < len(text):
        head = f"{name}*{counter}" + (
            "*=" + ("UTF-8''" if counter == 0 else "") if escaped else '="'
        )
        used = len(f"*{counter}") + name_len + (len("UTF-8") if escaped and counter == 0 else 0)
        end = min(len(text), start + limit - used)
        if escaped and end < len(text):
            if end - 1 > start and text[end - 1] == "%":
                end -= 1
            elif end - 2 > start and text[end - 2] == "%":
                end -= 2
            while end - 3 > start and text[end + 1] in "89AB":
                end -= 3
        pieces.append(head + text[start:end] + ("" if escaped else '"'))
        start, counter = end, counter + 1
    return ";\r\n ".join(pieces)


def _thunderbird_attachment(filename: str, data: bytes, content_type: str) -> str:
    params = ""
    if content_type.startswith("text/"):
        try:
            data.decode("utf-8")
            params += "; charset=UTF-8"
        except UnicodeDecodeError:
            params += "; charset=windows-1251"
    params += f'; name="{_rfc2047_param(filename)}"'
    emitter = _JsmimeEmitter()
    emitter.unstructured("Content-Type", content_type + params)
    emitter.unstructured(
        "Content-Disposition", "attachment; " + _rfc2231_param("filename", filename)
    )
    emitter.unstructured("Content-Transfer-Encoding", "base64")
    return emitter.text() + CRLF + _tb_base64(data)


def thunderbird_reply(
    original: bytes,
    *,
    sender: str,
    body: str,
    attachments: list[Attachment] | None = None,
    extra_headers: dict[str, str] | None = None,
    to: str | None = None,
    cc: str | None = None,
) -> bytes:
    """A reply as Thunderbird 115/128 (Russian UI, plain text, reply above the quote) sends it."""
    source = _read_original(original)
    name, address = email.utils.parseaddr(sender)
    references = _references(source)
    text = _thunderbird_body(body, source)
    headers = _JsmimeEmitter()
    boundary = _tb_boundary() if attachments else ""
    if attachments:
        headers.unstructured("Content-Type", f'multipart/mixed; boundary="{boundary}"')
    headers.unstructured("Message-ID", f"<{uuid.uuid4()}@{address.rpartition('@')[2]}>")
    headers.header_name("Date")
    headers.add_text(_jsmime_date(_reply_time(source).astimezone(MOSCOW)), False)
    headers.unstructured("MIME-Version", "1.0")
    headers.unstructured("User-Agent", "Mozilla Thunderbird")
    subject = (
        source.subject if source.subject.lower().startswith("re:") else f"Re: {source.subject}"
    )
    headers.unstructured("Subject", subject)
    headers.unstructured("Content-Language", "ru")
    headers.addresses("To", _recipients(source, to))
    if cc:
        headers.addresses("Cc", _parse_list(cc))
    if references:
        headers.message_ids("References", references)
    headers.addresses("From", ((name, address),))
    if references:
        headers.message_ids("In-Reply-To", references[-1:])
    text_headers = (
        f"Content-Type: text/plain; charset=UTF-8; format=flowed{CRLF}"
        f"Content-Transfer-Encoding: 8bit{CRLF}"
    )
    if not attachments:
        wire = headers.text() + text_headers + CRLF + text
    else:
        parts = [text_headers + CRLF + text]
        parts += [_thunderbird_attachment(*attachment) for attachment in attachments]
        wire = (
            headers.text()
            + CRLF
            + "This is a multi-part message in MIME format."
            + CRLF
            + "".join(f"--{boundary}{CRLF}{part}" for part in parts)
            + f"{CRLF}--{boundary}--{CRLF}"
        )
    return (_top_headers(extra_headers) + wire).encode("utf-8")


# --- Outlook -------------------------------------------------------------------------------

_RU_WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")
_RU_MONTHS = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
              "сентября", "октября", "ноября", "декабря")  # fmt: skip


def _outlook_date(moment: datetime) -> str:
    """Outlook's "Отправлено:" line: вторник, 3 марта 2026 г. 12:15 (Moscow time)."""
    local = moment.astimezone(MOSCOW)
    return (
        f"{_RU_WEEKDAYS[local.weekday()]}, {local.day} {_RU_MONTHS[local.month - 1]} "
        f"{local.year} г. {local.hour}:{local.minute:02d}"
    )


def _exchange_date(moment: datetime) -> str:
    """Exchange dates its mail in UTC: Tue, 3 Mar 2026 09:19:17 +0000."""
    utc = moment.astimezone(UTC)
    return (
        f"{_TB_DAYS[utc.weekday()]}, {utc.day} {_TB_MONTHS[utc.month - 1]} {utc:%Y %H:%M:%S} +0000"
    )


def _exchange_words(text: str, first_room: int) -> list[str]:
    """Exchange's utf-8 B words: cut at fixed byte counts, also between a letter's bytes."""
    data = text.encode("utf-8")
    words, start = [], 0
    room = first_room
    while start < len(data):
        size = max(3, (room - len("=?utf-8?B??=")) // 4 * 3)
        words.append(f"=?utf-8?B?{base64.b64encode(data[start : start + size]).decode()}?=")
        start += size
        room = 77
    return words


def _exchange_text(name: str, value: str) -> str:
    if value.isascii():
        return f"{name}: {value}{CRLF}"
    words = _exchange_words(value, 78 - len(name) - 2)
    return f"{name}: " + f"{CRLF} ".join(words) + CRLF


def _exchange_mailbox(display: str, address: str) -> str:
    if not display:
        return f'"{address}" <{address}>'
    if display.isascii():
        return f"{email.utils.formataddr((display, address))}"
    return f"{''.join(_exchange_words(display, 200))} <{address}>"


def _exchange_addresses(name: str, addresses: tuple[tuple[str, str], ...]) -> str:
    return f"{name}: " + f",{CRLF}\t".join(_exchange_mailbox(*item) for item in addresses) + CRLF


def _qp(text: str, charset: str) -> str:
    """Quoted-printable as Exchange writes it: CRLF lines, soft breaks before column 76."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        data = line.encode(charset)
        encoded, current = [], ""
        for index, byte in enumerate(data):
            blank_inside = byte in (0x20, 0x09) and index < len(data) - 1
            plain = blank_inside or (33 <= byte <= 126 and byte != 0x3D)
            token = chr(byte) if plain else f"={byte:02X}"
            if len(current) + len(token) > 75:
                encoded.append(current + "=")
                current = ""
            current += token
        encoded.append(current)
        out.append(CRLF.join(encoded))
    return CRLF.join(out)


def _outlook_mailbox_text(display: str, address: str) -> str:
    return f"{display} <{address}>" if display else address


def _outlook_header_block(source: _Original) -> list[tuple[str, str]]:
    rows = [
        ("От", _outlook_mailbox_text(*source.sender) + " "),
        ("Отправлено", _outlook_date(source.date or _reply_time(source))),
        ("Кому", "; ".join(_outlook_mailbox_text(*item) for item in source.to)),
    ]
    if source.cc:
        rows.append(("Копия", "; ".join(_outlook_mailbox_text(*item) for item in source.cc)))
    rows.append(("Тема", source.subject))
    return rows


_OUTLOOK_HEAD = """\
<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" \
xmlns:w="urn:schemas-microsoft-com:office:word" \
xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" xmlns="http://www.w3.org/TR/REC-html40">
<head>
<meta http-equiv=Content-Type content="text/html; charset=utf-8">
<meta name=Generator content="Microsoft Word 15 (filtered medium)">
<style><!--
/* Font Definitions */
@font-face
\t{font-family:"Cambria Math";
\tpanose-1:2 4 5 3 5 4 6 3 2 4;}
@font-face
\t{font-family:Calibri;
\tpanose-1:2 15 5 2 2 2 4 3 2 4;}
/* Style Definitions */
p.MsoNormal, li.MsoNormal, div.MsoNormal
\t{margin:0cm;
\tfont-size:11.0pt;
\tfont-family:"Calibri",sans-serif;
\tmso-fareast-language:EN-US;}
a:link, span.MsoHyperlink
\t{mso-style-priority:99;
\tcolor:#0563C1;
\ttext-decoration:underline;}
p.MsoPlainText, li.MsoPlainText, div.MsoPlainText
\t{mso-style-priority:99;
\tmso-style-link:"\\0422\\0435\\043A\\0441\\0442 \\0417\\043D\\0430\\043A";
\tmargin:0cm;
\tfont-size:11.0pt;
\tfont-family:"Calibri",sans-serif;
\tmso-fareast-language:EN-US;}
span.EmailStyle19
\t{mso-style-type:personal-reply;
\tfont-family:"Calibri",sans-serif;
\tcolor:windowtext;}
.MsoChpDefault
\t{mso-style-type:export-only;
\tfont-size:10.0pt;
\tmso-fareast-language:EN-US;}
@page WordSection1
\t{size:612.0pt 792.0pt;
\tmargin:2.0cm 42.5pt 2.0cm 3.0cm;}
div.WordSection1
\t{page:WordSection1;}
--></style><!--[if gte mso 9]><xml>
<o:shapedefaults v:ext="edit" spidmax="1026" />
</xml><![endif]--><!--[if gte mso 9]><xml>
<o:shapelayout v:ext="edit">
<o:idmap v:ext="edit" data="1" />
</o:shapelayout></xml><![endif]-->
</head>
<body lang=RU link="#0563C1" vlink="#954F72" style='word-wrap:break-word'>
<div class=WordSection1>
"""


def _mso_paragraph(line: str, style: str = "MsoNormal") -> str:
    if not line.strip():
        return f"<p class={style}><o:p>&nbsp;</o:p></p>\n"
    text = html.escape(line, quote=False).replace("  ", " &nbsp;")
    return f"<p class={style}>{text}<o:p></o:p></p>\n"


def _outlook_html(new_lines: list[str], rows: list[tuple[str, str]], quoted: list[str]) -> str:
    block = "<br>\n".join(
        f"<b>{label}:</b> {html.escape(value, quote=False)}" for label, value in rows
    )
    return (
        _OUTLOOK_HEAD
        + "".join(_mso_paragraph(line) for line in new_lines)
        + _mso_paragraph("")
        + "<div>\n<div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'>\n"
        + f"<p class=MsoNormal>{block}<o:p></o:p></p>\n"
        + "</div>\n</div>\n"
        + _mso_paragraph("", "MsoPlainText")
        + "".join(_mso_paragraph(line, "MsoPlainText") for line in quoted)
        + "</div>\n</body>\n</html>\n"
    )


def _thread_index(source: _Original, moment: datetime) -> str:
    """A new 22-byte index (FILETIME head + GUID), or the parent's plus a 5-byte child block."""
    ticks = int((moment.timestamp() + 11_644_473_600) * 10**7)
    if source.thread_index and len(source.thread_index) >= 22:
        return base64.b64encode(source.thread_index + secrets.token_bytes(5)).decode()
    return base64.b64encode(ticks.to_bytes(8, "big")[:6] + uuid.uuid4().bytes).decode()


def _outlook_attachment(filename: str, data: bytes, content_type: str, moment: datetime) -> str:
    encoded_name = filename if filename.isascii() else "".join(_exchange_words(filename, 200))
    created = email.utils.format_datetime((moment - timedelta(minutes=2)).astimezone(UTC), True)
    modified = email.utils.format_datetime(moment.astimezone(UTC), True)
    body = base64.encodebytes(data).decode("ascii").replace("\n", CRLF)
    return (
        f'Content-Type: {content_type}; name="{encoded_name}"{CRLF}'
        + _exchange_text("Content-Description", filename)
        + f'Content-Disposition: attachment; filename="{encoded_name}"; size={len(data)};{CRLF}'
        f'\tcreation-date="{created}";{CRLF}'
        f'\tmodification-date="{modified}"{CRLF}'
        f"Content-Transfer-Encoding: base64{CRLF}{CRLF}" + body
    )


def _outlook_plain(body: str, rows: list[tuple[str, str]], quoted: list[str]) -> str:
    lines = body.replace("\r\n", "\n").strip("\n").split("\n")
    lines += ["", *(f"{label}: {value}" for label, value in rows), "", *quoted]
    return CRLF.join(lines) + CRLF


def outlook_reply(
    original: bytes,
    *,
    sender: str,
    body: str,
    attachments: list[Attachment] | None = None,
    extra_headers: dict[str, str] | None = None,
    to: str | None = None,
    cc: str | None = None,
    charset: str = "windows-1251",
) -> bytes:
    """A reply as Outlook 2016 / Microsoft 365 (Russian UI, HTML compose) sends it through
    Exchange: multipart/alternative, the original unquoted below an "От:" header block."""
    source = _read_original(original)
    name, address = email.utils.parseaddr(sender)
    moment = _reply_time(source)
    token = uuid.uuid4().hex
    message_id = f"<{token}@{EXCHANGE_HOST}>"
    tag = token + re.sub(r"[^A-Za-z0-9]", "", EXCHANGE_HOST)
    references = _references(source)
    rows = _outlook_header_block(source)
    quoted = source.text.split("\n") if source.text else []
    plain = _outlook_plain(body, rows, quoted)
    try:
        plain.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"  # Outlook falls back when the text does not fit the code page
    new_lines = body.replace("\r\n", "\n").strip("\n").split("\n")
    markup = _outlook_html(new_lines, rows, quoted)
    alternative = f"_000_{tag}_"
    alternative_body = (
        f"--{alternative}{CRLF}"
        f'Content-Type: text/plain; charset="{charset}"{CRLF}'
        f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
        f"{_qp(plain, charset)}{CRLF}"
        f"--{alternative}{CRLF}"
        f'Content-Type: text/html; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
        f"{_qp(markup, 'utf-8')}{CRLF}"
        f"--{alternative}--{CRLF}"
    )
    subject = source.subject
    reply_subject = subject if re.match(r"(?i)re:", subject) else f"RE: {subject}"
    head = (
        _exchange_addresses("From", ((name, address),))
        + _exchange_addresses("To", _recipients(source, to))
        + (_exchange_addresses("CC", _parse_list(cc)) if cc else "")
        + _exchange_text("Subject", reply_subject)
        + _exchange_text("Thread-Topic", re.sub(r"(?i)^(re|fw|fwd):\s*", "", subject))
        + f"Thread-Index: {_thread_index(source, moment)}{CRLF}"
        + f"Date: {_exchange_date(moment)}{CRLF}"
        + f"Message-ID: {message_id}{CRLF}"
        + (f"References: {' '.join(references)}{CRLF}" if references else "")
        + (f"In-Reply-To: {references[-1]}{CRLF}" if references else "")
        + f"Accept-Language: ru-RU, en-US{CRLF}"
        + f"Content-Language: ru-RU{CRLF}"
        + f"X-MS-Has-Attach: {'yes' if attachments else ''}{CRLF}"
        + f"X-MS-TNEF-Correlator: {CRLF}"
        + f"x-originating-ip: [10.10.1.57]{CRLF}"
    )
    if not attachments:
        wire = (
            head
            + f'Content-Type: multipart/alternative;{CRLF}\tboundary="{alternative}"{CRLF}'
            + f"MIME-Version: 1.0{CRLF}{CRLF}"
            + alternative_body
        )
    else:
        mixed = f"_004_{tag}_"
        parts = [
            f'Content-Type: multipart/alternative;{CRLF}\tboundary="{alternative}"{CRLF}{CRLF}'
            + alternative_body
        ]
        parts += [_outlook_attachment(*attachment, moment) for attachment in attachments]
        wire = (
            head
            + f'Content-Type: multipart/mixed;{CRLF}\tboundary="{mixed}"{CRLF}'
            + f"MIME-Version: 1.0{CRLF}{CRLF}"
            + "".join(f"--{mixed}{CRLF}{part}{CRLF}" for part in parts)
            + f"--{mixed}--{CRLF}"
        )
    return (_top_headers(extra_headers) + wire).encode("ascii")
