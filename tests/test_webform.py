"""The site's request form as pure decisions (issue 19): what a submission must hold, the mail
it becomes (through the real pipeline: channel web, acknowledgement, a later mail joins),
the CSRF token and the rate limit. The HTTP listener and the browser test are still to come."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from maild.sources.webform import (
    MAX_FILES,
    FieldError,
    FormLimits,
    RateLimiter,
    Submission,
    UploadedFile,
    check_csrf_token,
    issue_csrf_token,
    submission_to_mail,
    validate_submission,
)
from storage.models import Attachment, Ticket
from tests.mailbuilder import build_mail
from tests.test_pipeline import client_outbox, ingest, outbox

LIMITS = FormLimits(max_file_bytes=1024 * 1024, max_total_bytes=4 * 1024 * 1024)
FIELDS = {
    "name": "Пётр Сидоров", "email": "sidorov@stroymontazh.ru", "organization": "СтройМонтаж",
    "version": "Cubisio 3.2.1", "problem": "Не открывается отчёт по складу\nОшибка 0x80004005",
    "steps": "1. Открыть отчёт\n2. Нажать «Сформировать»", "environment": "Windows 10, 16 ГБ",
    "criticality": "high", "website": "",
}  # fmt: skip
LOG = UploadedFile("cubisio.log", "text/plain", b"2026-03-03 ERROR report failed\n" * 50)
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def codes(result) -> set[tuple[str, str]]:
    assert isinstance(result, list)
    return {(error.field, error.code) for error in result}


def test_a_complete_submission_is_accepted_and_cleaned():
    fields = {**FIELDS, "problem": "Отчёт\r\nпадает\x1b[31m\x00", "criticality": "HIGH"}
    result = validate_submission(fields, [LOG], LIMITS)
    assert isinstance(result, Submission)
    assert result.problem == "Отчёт\nпадает[31m"
    assert result.criticality == "high"
    assert result.files == (LOG,)


def test_every_reason_is_given_at_once():
    fields = {**FIELDS, "email": "not an address", "problem": " ", "criticality": "urgent",
              "version": "x" * 101}  # fmt: skip
    assert codes(validate_submission(fields, [], LIMITS)) == {
        ("email", "invalid"), ("problem", "missing"), ("criticality", "invalid"),
        ("version", "too_long"),
    }  # fmt: skip
    assert codes(validate_submission({}, [], LIMITS)) == {
        ("email", "missing"), ("problem", "missing"),
    }  # fmt: skip


def test_files_over_the_limits_are_refused():
    big = UploadedFile("dump.dmp", "application/octet-stream", b"x" * (LIMITS.max_file_bytes + 1))
    assert ("files", "file_too_large") in codes(validate_submission(FIELDS, [big], LIMITS))
    many = [LOG] * (MAX_FILES + 1)
    assert ("files", "too_many_files") in codes(validate_submission(FIELDS, many, LIMITS))
    near = UploadedFile("a.bin", "application/octet-stream", b"x" * LIMITS.max_file_bytes)
    assert ("files", "too_large") in codes(validate_submission(FIELDS, [near] * 5, LIMITS))


def test_the_honeypot_refuses_a_bot_without_saying_more():
    result = validate_submission({**FIELDS, "website": "http://spam.example"}, [], LIMITS)
    assert result == [FieldError("website", "bot")]


def test_a_submission_becomes_a_ticket_of_channel_web_and_mail_joins_it(make_app):
    app = make_app()
    submission = validate_submission(
        {**FIELDS, "steps": "<script>alert(1)</script>"}, [LOG], LIMITS
    )
    assert isinstance(submission, Submission)
    raw = submission_to_mail(
        submission, support_address="info@sis.ru", message_id="<web-1@sis.ru>", received_at=NOW
    )
    result = ingest(app, raw, source="web")
    assert result.action == "new_ticket"
    with app.sessions() as session:
        ticket = session.get(Ticket, result.ticket)
        assert ticket is not None
        assert ticket.channel == "web"
        assert ticket.subject == "Не открывается отчёт по складу"
        [attachment] = session.scalars(select(Attachment)).all()
        assert attachment.filename == "cubisio.log"
        assert attachment.kind == "log"
    [ack] = client_outbox(app)
    assert ack.recipient == "sidorov@stroymontazh.ru"
    notice = next(m for m in outbox(app) if m.purpose == "ticket_notice")
    text = (
        email.message_from_bytes(notice.raw, policy=email.policy.default)
        .get_body(("plain",))
        .get_content()
    )
    assert "<script>alert(1)</script>" in text  # shown as text, in a text/plain notice
    acknowledgement = email.message_from_bytes(ack.raw, policy=email.policy.default)
    reply = build_mail(
        sender="sidorov@stroymontazh.ru", subject=f"Re: {acknowledgement['Subject']}",
        message_id="<reply@stroymontazh.ru>", in_reply_to=acknowledgement["Message-ID"],
        body="Приложил ещё скриншот.",
    )  # fmt: skip
    joined = ingest(app, reply)
    assert joined.action == "follow_up"
    assert joined.ticket == result.ticket


def test_the_same_mail_from_smtp_is_not_channel_web(make_app):
    """The channel comes from the listener, never from the message: a mail shaped like a
    form submission is mail."""
    app = make_app()
    submission = validate_submission(FIELDS, [], LIMITS)
    assert isinstance(submission, Submission)
    raw = submission_to_mail(
        submission, support_address="info@sis.ru", message_id="<web-2@sis.ru>", received_at=NOW
    )
    result = ingest(app, raw, source="smtp")
    with app.sessions() as session:
        ticket = session.get(Ticket, result.ticket)
        assert ticket is not None
        assert ticket.channel == "email"


def test_csrf_token_round_trip_and_forgeries():
    secret = b"k" * 32
    token = issue_csrf_token(secret, NOW, "n0nce")
    later = NOW + timedelta(minutes=30)
    assert check_csrf_token(secret, token, token, later, max_age_seconds=3600)
    assert not check_csrf_token(secret, token, "", later, max_age_seconds=3600)  # no cookie
    assert not check_csrf_token(secret, token, token + "x", later, max_age_seconds=3600)
    forged = issue_csrf_token(b"other secret", NOW, "n0nce")
    assert not check_csrf_token(secret, forged, forged, later, max_age_seconds=3600)
    expired = NOW + timedelta(hours=2)
    assert not check_csrf_token(secret, token, token, expired, max_age_seconds=3600)
    assert not check_csrf_token(secret, "garbage", "garbage", later, max_age_seconds=3600)


def test_a_hundred_posts_a_minute_from_one_address_are_cut_to_the_limit():
    limiter = RateLimiter(limit=5, window_seconds=60)
    allowed = [limiter.allow("203.0.113.7", second * 0.6) for second in range(100)]
    assert allowed.count(True) == 5
    assert limiter.allow("198.51.100.1", 59.0)  # another address is not held back
    assert limiter.allow("203.0.113.7", 61.0)  # the window moves on
    limiter.forget_idle(200.0)
    assert limiter.events == {}
