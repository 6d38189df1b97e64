"""The whole pipeline on a real database (SQLite file and PostgreSQL): spool to outbox."""

from __future__ import annotations

import email
from datetime import timedelta

from sqlalchemy import func, select

from maild.notices import ENGINEER_NOTICES
from maild.pipeline import Incoming, IngestAction
from maild.worker import process_safely
from storage.models import Event, InboundMessage, Message, OutboxMessage, Participant, Ticket
from storage.spool import new_spool_id
from tests.mailbuilder import build_mail


def ingest(app, raw: bytes, source: str = "test"):
    result = process_safely(app.pipeline, Incoming.of(new_spool_id(), raw, source))
    assert result is not None
    return result


def outbox(app) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def client_outbox(app) -> list[OutboxMessage]:
    """What maild queued for clients, without the notices to engineers."""
    return [row for row in outbox(app) if row.purpose not in ENGINEER_NOTICES]


def notices(app) -> list[OutboxMessage]:
    return [row for row in outbox(app) if row.purpose in ENGINEER_NOTICES]


def test_new_request_opens_ticket_and_queues_acknowledgement(app):
    result = ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    assert (result.action, result.ticket, result.reason) == (
        IngestAction.NEW_TICKET,
        1,
        "no_thread_match",
    )
    [row] = client_outbox(app)
    ack = email.message_from_bytes(row.raw)
    assert row.recipient == "sidorov@stroymontazh.ru"
    assert "[SIS #1]" in str(email.header.make_header(email.header.decode_header(ack["Subject"])))
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<req-1@stroymontazh.ru>"
    assert ack["Message-ID"].endswith("@sis.ru>")
    assert row.envelope_from == ""
    [notice] = notices(app)  # the only engineer of the config is told
    assert (notice.recipient, notice.purpose) == ("ivanov@sis.ru", "ticket_notice")


def test_tickets_are_numbered_in_order(app):
    numbers = [
        ingest(app, build_mail(subject=f"Вопрос {n}", message_id=f"<q{n}@x.ru>")).ticket
        for n in range(5)
    ]
    assert numbers == [1, 2, 3, 4, 5]


def test_reply_with_token_joins_ticket(app):
    ingest(app, build_mail(message_id="<a@stroymontazh.ru>"))
    reply = build_mail(
        subject="RE: [SIS #1] Не открывается отчёт",
        body="Прикладываю лог.",
        message_id="<b@stroymontazh.ru>",
    )
    result = ingest(app, reply)
    assert (result.action, result.ticket, result.reason) == (
        IngestAction.FOLLOW_UP,
        1,
        "token_match",
    )
    assert len(client_outbox(app)) == 1  # follow-ups are not acknowledged again
    assert len(notices(app)) == 2  # but engineers hear of each


def test_reply_by_in_reply_to_our_acknowledgement_joins_ticket(app):
    ingest(app, build_mail(message_id="<a@stroymontazh.ru>"))
    ack_id = email.message_from_bytes(outbox(app)[0].raw)["Message-ID"]
    reply = build_mail(
        subject="Re: без метки", message_id="<c@stroymontazh.ru>", in_reply_to=ack_id
    )
    result = ingest(app, reply)
    assert (result.action, result.ticket, result.reason) == (
        IngestAction.FOLLOW_UP,
        1,
        "in_reply_to_match",
    )


def test_reply_by_references_joins_ticket(app):
    ingest(app, build_mail(message_id="<a@stroymontazh.ru>"))
    reply = build_mail(
        subject="Другая тема",
        message_id="<d@stroymontazh.ru>",
        references="<zzz@x> <a@stroymontazh.ru>",
    )
    result = ingest(app, reply)
    assert (result.action, result.ticket, result.reason) == (
        IngestAction.FOLLOW_UP,
        1,
        "references_match",
    )


def test_colleague_from_same_organisation_may_join(app):
    ingest(app, build_mail(message_id="<a@stroymontazh.ru>"))
    colleague = build_mail(
        sender="boss@stroymontazh.ru",
        subject="Re: [SIS #1] срочно",
        message_id="<e@stroymontazh.ru>",
    )
    assert ingest(app, colleague).action is IngestAction.FOLLOW_UP


def test_stranger_copying_token_opens_own_ticket_with_security_event(app):
    ingest(app, build_mail(message_id="<a@stroymontazh.ru>"))
    hijack = build_mail(
        sender="evil@attacker.example",
        subject="Re: [SIS #1] дайте логи",
        message_id="<h@attacker.example>",
    )
    result = ingest(app, hijack)
    assert (result.action, result.ticket, result.reason) == (
        IngestAction.NEW_TICKET,
        2,
        "token_sender_not_participant",
    )
    with app.sessions() as session:
        kinds = session.scalars(select(Event.reason).where(Event.kind == "security")).all()
        members = session.scalars(select(Participant.email).where(Participant.ticket_id == 1)).all()
    assert kinds == ["token_sender_not_participant"]
    assert members == ["sidorov@stroymontazh.ru"]


def test_public_mail_domain_is_not_an_organisation(app):
    ingest(app, build_mail(sender="user1@mail.ru", message_id="<m1@mail.ru>"))
    other = build_mail(sender="user2@mail.ru", subject="Re: [SIS #1]", message_id="<m2@mail.ru>")
    assert ingest(app, other).reason == "token_sender_not_participant"


def test_cc_of_participant_becomes_participant_and_may_reply(app):
    ingest(
        app,
        build_mail(
            message_id="<a@stroymontazh.ru>", cc="partner@integrator.example, info+comment@sis.ru"
        ),
    )
    with app.sessions() as session:
        members = set(session.scalars(select(Participant.email).where(Participant.ticket_id == 1)))
    assert members == {"sidorov@stroymontazh.ru", "partner@integrator.example"}
    reply = build_mail(
        sender="partner@integrator.example",
        subject="RE: [SIS #1]",
        message_id="<p@integrator.example>",
    )
    assert ingest(app, reply).action is IngestAction.FOLLOW_UP


def test_same_message_twice_is_duplicate(app):
    raw = build_mail(message_id="<dup@stroymontazh.ru>")
    assert ingest(app, raw).action is IngestAction.NEW_TICKET
    relayed = b"Received: from mx2.sis.ru by mx.sis.ru; Tue, 3 Mar 2026 10:16:00 +0000\r\n" + raw
    second = ingest(app, relayed)
    assert (second.action, second.ticket, second.reason) == (
        IngestAction.DUPLICATE,
        1,
        "same_message_already_received",
    )
    assert len(client_outbox(app)) == len(notices(app)) == 1


def test_replay_of_same_spool_entry_changes_nothing(app):
    incoming = Incoming.of("fixed-spool-id", build_mail(message_id="<r@x.ru>"), "test")
    first = process_safely(app.pipeline, incoming)
    again = process_safely(app.pipeline, incoming)
    assert (again.action, again.ticket) == (first.action, first.ticket)
    with app.sessions() as session:
        assert session.scalar(select(func.count(InboundMessage.id))) == 1
        assert session.scalar(select(func.count(Ticket.id))) == 1


def test_autoreply_to_ticket_is_stored_internal_and_not_answered(app):
    ingest(app, build_mail(message_id="<a@stroymontazh.ru>"))
    oof = build_mail(
        subject="Автоответ: [SIS #1] Не открывается отчёт",
        body="Я в отпуске до 10 марта.",
        headers={"Auto-Submitted": "auto-replied"},
        message_id="<oof@stroymontazh.ru>",
    )
    result = ingest(app, oof)
    assert (result.action, result.ticket, result.reason) == (
        IngestAction.IGNORED,
        1,
        "auto_submitted",
    )
    with app.sessions() as session:
        stored = session.scalars(
            select(Message).where(Message.message_id == "oof@stroymontazh.ru")
        ).one()
    assert stored.visibility == "internal"
    assert len(client_outbox(app)) == len(notices(app)) == 1  # nobody hears of a machine


def test_bulk_mail_opens_no_ticket(app):
    raw = build_mail(
        sender="news@vendor.example",
        headers={"Precedence": "bulk", "List-Unsubscribe": "<mailto:u@vendor.example>"},
    )
    result = ingest(app, raw)
    assert (result.action, result.ticket, result.reason) == (
        IngestAction.IGNORED,
        None,
        "precedence_bulk",
    )
    assert outbox(app) == []


def test_our_own_mail_coming_back_is_ignored(app):
    ingest(app, build_mail(message_id="<a@stroymontazh.ru>"))
    ack = outbox(app)[0].raw
    result = ingest(app, ack)
    assert result.action is IngestAction.IGNORED
    assert result.reason in {"loop_own_message", "auto_submitted", "from_own_address"}


def test_acknowledgements_are_rate_limited_per_sender(make_app):
    app = make_app("[guard]\nautoreply_limit = 2\n")
    results = [
        ingest(app, build_mail(subject=f"Тема {n}", message_id=f"<flood{n}@x.ru>"))
        for n in range(4)
    ]
    assert [r.action for r in results] == [IngestAction.NEW_TICKET] * 4
    assert len(client_outbox(app)) == 2
    assert len(notices(app)) == 4  # engineers are told even when the client is not
    with app.sessions() as session:
        suppressed = session.scalars(
            select(Event.reason).where(Event.kind == "ack_suppressed")
        ).all()
    assert suppressed == ["ack_rate_limited", "ack_rate_limited"]


def test_closed_ticket_reopens_within_window_and_links_after(app, clock):
    ingest(app, build_mail(message_id="<a@stroymontazh.ru>"))
    with app.sessions.begin() as session:
        ticket = session.get(Ticket, 1)
        ticket.status, ticket.closed_at = "closed", clock.now()
    clock.current += timedelta(days=3)
    result = ingest(app, build_mail(subject="Re: [SIS #1] снова", message_id="<b@stroymontazh.ru>"))
    assert (result.action, result.ticket, result.reason) == (
        IngestAction.FOLLOW_UP,
        1,
        "token_match_reopened",
    )
    with app.sessions.begin() as session:
        ticket = session.get(Ticket, 1)
        assert ticket.status == "open"
        ticket.status, ticket.closed_at = "closed", clock.now()
    clock.current += timedelta(days=30)
    late = ingest(app, build_mail(subject="Re: [SIS #1] опять", message_id="<c@stroymontazh.ru>"))
    assert (late.action, late.ticket, late.reason) == (
        IngestAction.NEW_TICKET,
        2,
        "token_match_closed_too_long",
    )
    with app.sessions() as session:
        assert session.get(Ticket, 2).linked_ticket_id == 1


def test_message_without_sender_is_quarantined(app):
    result = ingest(app, b"\x00\x01garbage\xff\xfe not a mail at all")
    assert (result.action, result.reason) == (IngestAction.QUARANTINED, "no_sender")
    with app.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
    assert row.state == "quarantined"
    assert app.artifacts.read(row.raw_sha256).startswith(b"\x00\x01garbage")


def test_attachments_are_stored_once_with_kind_and_hash(app):
    log_bytes = b"2026-03-03 10:00:01 ERROR report failed\n" * 50
    raw = build_mail(
        attachments=[
            ("cubisio.log", log_bytes, "text/plain"),
            ("same.log", log_bytes, "text/plain"),
        ]
    )
    result = ingest(app, raw)
    with app.sessions() as session:
        message = session.scalars(
            select(Message).where(Message.ticket_id == result.ticket, Message.direction == "in")
        ).one()
        stored = [
            (a.filename, a.kind, a.artifact.size, a.artifact.sha256) for a in message.attachments
        ]
    assert [row[:3] for row in stored] == [
        ("cubisio.log", "log", len(log_bytes)),
        ("same.log", "log", len(log_bytes)),
    ]
    assert stored[0][3] == stored[1][3]
    assert app.artifacts.read(stored[0][3]) == log_bytes


def test_acknowledgement_names_missing_checklist_items(app):
    ingest(app, build_mail(subject="Ошибка", body="Здравствуйте, не работает отчёт."))
    text = outbox(app)[0].raw.decode()
    body = email.message_from_string(text).get_payload(decode=True).decode()
    assert "версия продукта Cubisio" in body
    assert "снимки экрана" in body
    assert "Регистрация обращения не означает" in body


def test_english_request_gets_english_acknowledgement(app):
    ingest(
        app,
        build_mail(
            sender="john.smith@acme-corp.com",
            subject="Report fails",
            body="Hello, Cubisio 3.2 crashes.",
        ),
    )
    body = email.message_from_bytes(outbox(app)[0].raw).get_payload(decode=True).decode()
    assert "Your request has been registered" in body
