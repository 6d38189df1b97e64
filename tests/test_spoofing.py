"""Attacks on identity, end to end through the spool: a trusted relay is believed only as
the peer of maild's own SMTP/LMTP listener, never from an IMAP server's address or a header."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from maild.worker import drain_spool
from storage.models import Event, InboundMessage, OutboxMessage, Participant
from storage.spool import SpoolMeta
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest

RELAY = '[security]\ntrusted_relays = ["10.20.0.0/16"]\n'


def engineer_reply(**headers: str) -> bytes:
    return build_mail(
        sender="Иван Иванов <ivanov@sis.ru>",
        subject="Re: [SIS #1] Не открывается отчёт",
        body="Пётр, обновите до 3.2.2.",
        headers=headers or None,
    )


def spool_and_run(app, raw: bytes, *, source: str, peer: str) -> InboundMessage:
    app.spool.put(raw, SpoolMeta(source=source, received_at="2026-03-03T09:00:00Z", peer=peer))
    drain_spool(app.spool, app.pipeline)
    with app.sessions() as session:
        return session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()


def security_reasons(app) -> list[str]:
    with app.sessions() as session:
        return list(session.scalars(select(Event.reason).where(Event.kind == "security")))


def test_engineer_through_trusted_relay_is_believed(make_app):
    app = make_app(RELAY)
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    row = spool_and_run(app, engineer_reply(), source="smtp", peer="10.20.1.7")
    assert (row.state, row.ticket_id, row.reason) == ("follow_up", 1, "token_match")
    assert "trusted relay 10.20.1.7" in row.explanation
    assert security_reasons(app) == []


def test_engineer_from_any_other_peer_is_not(make_app):
    app = make_app(RELAY)
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    row = spool_and_run(app, engineer_reply(), source="lmtp", peer="203.0.113.9")
    assert (row.state, row.reason) == ("new_ticket", "token_sender_not_participant")
    assert security_reasons(app) == ["unverified_engineer"]


def test_an_imap_server_address_is_no_relay(make_app):
    # The IMAP source records its server as the "peer"; it says nothing about the sender.
    app = make_app(RELAY)
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    row = spool_and_run(app, engineer_reply(), source="imap:main/INBOX/1/7", peer="10.20.1.7")
    assert (row.state, row.reason) == ("new_ticket", "token_sender_not_participant")


def test_a_received_header_naming_the_relay_proves_nothing(make_app):
    app = make_app(RELAY)
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    forged = engineer_reply(Received="from relay.sis.ru (relay.sis.ru [10.20.1.7]) by mx.sis.ru")
    row = spool_and_run(app, forged, source="smtp", peer="198.51.100.4")
    assert row.state == "new_ticket"
    assert security_reasons(app) == ["unverified_engineer"]


def test_a_forged_engineer_without_token_is_a_client_with_a_security_event(make_app):
    app = make_app('[security]\ntrusted_authserv_ids = ["mx.sis.ru"]\n')
    result = ingest(
        app,
        build_mail(
            sender="Иван Иванов <ivanov@sis.ru>",
            subject="Срочно: смена пароля",
            headers={"Authentication-Results": "mx.evil.example; dkim=pass header.d=sis.ru"},
        ),
    )
    assert (str(result.action), result.reason) == ("new_ticket", "no_thread_match")
    assert "untrusted mx.evil.example" in result.explanation
    assert security_reasons(app) == ["unverified_engineer"]


def test_a_sender_imitating_our_domain_is_recorded(app):
    result = ingest(app, build_mail(sender="Служба поддержки <info@sis-ru.com>"))
    assert str(result.action) == "new_ticket"
    assert security_reasons(app) == ["lookalike_own_domain"]


def test_our_domain_is_nobodys_organisation(app):
    # A client at sis.ru (an employee writing as a client) shares no ticket with colleagues.
    ingest(app, build_mail(sender="buh@sis.ru", message_id="<b@sis.ru>"))
    result = ingest(
        app, build_mail(sender="hr@sis.ru", subject="Re: [SIS #1] x", message_id="<c@sis.ru>")
    )
    assert (str(result.action), result.reason) == ("new_ticket", "token_sender_not_participant")


def test_rate_limit_is_per_day(make_app, clock):
    app = make_app("[guard]\nautoreply_limit = 2\n")

    def write(n: int):
        return ingest(app, build_mail(subject=f"Тема {n}", message_id=f"<d{n}@x.ru>"))

    for n in range(3):
        write(n)
        clock.current += timedelta(hours=1)
    clock.current += timedelta(hours=22)  # 24 h after the first acknowledgement
    write(3)
    with app.sessions() as session:
        acks = session.scalars(
            select(OutboxMessage.created_at).where(OutboxMessage.purpose == "acknowledgement")
        ).all()
    assert len(acks) == 3  # two on the first day, the third message silenced, one next day


def test_participants_join_only_by_a_participants_cc(app):
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    # A stranger's Cc in a refused message adds nobody to ticket 1.
    ingest(
        app,
        build_mail(
            sender="x@evil.example", subject="Re: [SIS #1] x", cc="friend@evil.example",
            message_id="<h@evil.example>",
        ),
    )  # fmt: skip
    # A colleague let in by the organisation's domain becomes a participant, and so do the
    # people they copy.
    ingest(
        app,
        build_mail(
            sender="boss@stroymontazh.ru", subject="Re: [SIS #1] x", cc="it@partner.ru",
            message_id="<boss@stroymontazh.ru>",
        ),
    )  # fmt: skip
    with app.sessions() as session:
        rows = session.execute(
            select(Participant.email, Participant.role).where(Participant.ticket_id == 1)
        ).all()
        members = dict(rows)
    assert members == {
        "sidorov@stroymontazh.ru": "requester",
        "boss@stroymontazh.ru": "colleague",
        "it@partner.ru": "cc",
    }
