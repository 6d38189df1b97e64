"""The request form of the product site, as pure decisions (issue 19): what a submission must
hold, the mail it becomes, the CSRF token of the page, and the per-IP and per-address rate
limit. The HTTP listener (to come) only moves bytes between these and the spool.

A submission becomes an ordinary RFC 5322 message from the client to the support address,
so it takes the same road as mail (parse, guard, thread, store, act): the same
acknowledgement with the checklist, the same threading when the client later writes by
mail, the same audit trail. The channel is recorded from the spool's source (`web`), never
from anything in the message, which a mail sender could forge.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

CRITICALITIES = ("low", "normal", "high", "critical")
FIELD_LIMITS = {
    "name": 200, "email": 254, "organization": 200, "version": 100, "problem": 20_000,
    "steps": 20_000, "environment": 5_000, "criticality": 16, "website": 200,
}  # fmt: skip
"""Characters per field; `website` is the honeypot: hidden from people, filled by bots."""
REQUIRED = ("email", "problem")
MAX_FILES = 10
SUBJECT_CHARACTERS = 120
_EMAIL = re.compile(
    r"^[^@\s<>\"(),;:\\\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
)
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class UploadedFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    code: str
    """Stable snake_case: missing, too_long, invalid, too_many_files, file_too_large,
    too_large, bot."""


@dataclass(frozen=True, slots=True)
class Submission:
    email: str
    problem: str
    name: str = ""
    organization: str = ""
    version: str = ""
    steps: str = ""
    environment: str = ""
    criticality: str = ""
    files: tuple[UploadedFile, ...] = ()


@dataclass(frozen=True, slots=True)
class FormLimits:
    max_file_bytes: int
    """[artifacts] max_attachment_mb."""
    max_total_bytes: int
    """[artifacts] max_message_mb: the whole submission as one message."""


def validate_submission(
    fields: Mapping[str, str], files: Sequence[UploadedFile], limits: FormLimits
) -> Submission | list[FieldError]:
    """A clean submission, or every reason it is refused (all of them, for the form to show)."""
    values = {name: _clean(fields.get(name, "")) for name in FIELD_LIMITS}
    if values["website"]:
        return [FieldError("website", "bot")]
    errors = _field_errors(values) + _file_errors(values, files, limits)
    if errors:
        return errors
    return Submission(
        email=values["email"].strip(), problem=values["problem"].strip(),
        name=values["name"].strip(), organization=values["organization"].strip(),
        version=values["version"].strip(), steps=values["steps"].strip(),
        environment=values["environment"].strip(),
        criticality=values["criticality"].strip().lower(), files=tuple(files),
    )  # fmt: skip


def _field_errors(values: Mapping[str, str]) -> list[FieldError]:
    errors = [FieldError(name, "too_long") for name, limit in FIELD_LIMITS.items()
              if len(values[name]) > limit]  # fmt: skip
    errors += [FieldError(name, "missing") for name in REQUIRED if not values[name].strip()]
    email = values["email"].strip()
    if email and not _EMAIL.match(email):
        errors.append(FieldError("email", "invalid"))
    criticality = values["criticality"].strip().lower()
    if criticality and criticality not in CRITICALITIES:
        errors.append(FieldError("criticality", "invalid"))
    return errors


def _file_errors(
    values: Mapping[str, str], files: Sequence[UploadedFile], limits: FormLimits
) -> list[FieldError]:
    errors = [FieldError("files", "too_many_files")] if len(files) > MAX_FILES else []
    errors += [
        FieldError("files", "file_too_large")
        for upload in files
        if len(upload.data) > limits.max_file_bytes
    ]
    total = sum(len(f.data) for f in files) + sum(len(v) for v in values.values())
    if total > limits.max_total_bytes:
        errors.append(FieldError("files", "too_large"))
    return errors


def _clean(value: str) -> str:
    """Line ends unified and control characters dropped: they mean nothing in a form field
    and could only smuggle a header line or drive a terminal."""
    return _CONTROLS.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))


SECTIONS = {
    "ru": {"organization": "Организация", "version": "Версия продукта",
           "environment": "Окружение", "steps": "Шаги воспроизведения",
           "criticality": "Критичность (по оценке клиента)",
           "via": "Обращение через форму на сайте"},
    "en": {"organization": "Organisation", "version": "Product version",
           "environment": "Environment", "steps": "Steps to reproduce",
           "criticality": "Criticality (as the client sees it)",
           "via": "Request sent by the web form"},
}  # fmt: skip


def submission_to_mail(
    submission: Submission,
    *,
    support_address: str,
    message_id: str,
    received_at: datetime,
    language: str = "ru",
) -> bytes:
    """The submission as the mail the client would have written: From the client, To the
    support address, the problem as the text, the regulation's fields under their names."""
    labels = SECTIONS[language]
    mail = EmailMessage(policy=SMTP)
    mail["From"] = Address(display_name=submission.name, addr_spec=submission.email)
    mail["To"] = support_address
    first_line = submission.problem.strip().splitlines()[0]
    mail["Subject"] = first_line[:SUBJECT_CHARACTERS]
    mail["Date"] = format_datetime(received_at)
    mail["Message-ID"] = message_id
    body = [submission.problem, ""]
    for name in ("version", "environment", "steps", "organization", "criticality"):
        value = getattr(submission, name)
        if value:
            body += [f"{labels[name]}:", value, ""]
    body.append(f"-- \n{labels['via']}")
    mail.set_content("\n".join(body), charset="utf-8")
    for upload in submission.files:
        maintype, _, subtype = (upload.content_type or "application/octet-stream").partition("/")
        if not maintype or not subtype or "\n" in upload.content_type:
            maintype, subtype = "application", "octet-stream"
        mail.add_attachment(
            upload.data, maintype=maintype, subtype=subtype,
            filename=_CONTROLS.sub("", upload.filename)[:255] or "file",
        )  # fmt: skip
    return mail.as_bytes()


def issue_csrf_token(secret: bytes, now: datetime, nonce: str) -> str:
    """`issued.nonce.mac`: the page carries it in a hidden field and a cookie; a post must
    bring both, equal, unexpired and made with our secret."""
    issued = str(int(now.timestamp()))
    mac = hmac.new(secret, f"{issued}.{nonce}".encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{nonce}.{mac}"


def check_csrf_token(
    secret: bytes, form_token: str, cookie_token: str, now: datetime, max_age_seconds: int
) -> bool:
    if not form_token or not hmac.compare_digest(form_token, cookie_token):
        return False
    issued, _, rest = form_token.partition(".")
    nonce, _, mac = rest.partition(".")
    if not issued.isdigit() or not nonce or not mac:
        return False
    expected = hmac.new(secret, f"{issued}.{nonce}".encode(), hashlib.sha256).hexdigest()
    age = now.timestamp() - int(issued)
    return hmac.compare_digest(mac, expected) and 0 <= age <= max_age_seconds


@dataclass(slots=True)
class RateLimiter:
    """At most `limit` events per key in any `window_seconds`; the caller passes the time
    (the one clock), so the limit is testable at any moment."""

    limit: int
    window_seconds: float
    events: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        recent = self.events.setdefault(key, deque())
        while recent and now - recent[0] >= self.window_seconds:
            recent.popleft()
        if len(recent) >= self.limit:
            return False
        recent.append(now)
        return True

    def forget_idle(self, now: float) -> None:
        """Drop keys with nothing in the window, so that many one-off senders cost nothing."""
        for key in [
            k for k, v in self.events.items() if not v or now - v[-1] >= self.window_seconds
        ]:
            del self.events[key]
