"""Bounces of our mail (RFC 3464): the recipient is marked, the ticket's engineers are told,
and nothing a stranger writes can do either (SQLite and PostgreSQL)."""

from __future__ import annotations

import email
from datetime import timedelta

from sqlalchemy import select

from storage.models import Contact, Event, Message
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest, outbox

POSTFIX_DSN = """\
Return-Path: <>
Received: by mx.sis.ru (Postfix) id 4Zx1; Tue,  3 Mar 2026 12:01:02 +0300 (MSK)
Date: Tue,  3 Mar 2026 12:01:02 +0300 (MSK)
From: MAILER-DAEMON@mx.sis.ru (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: info@sis.ru
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4Zx1.1709456462/mx.sis.ru"
Message-Id: <{dsn_id}@mx.sis.ru>

This is a MIME-encapsulated message.

--4Zx1.1709456462/mx.sis.ru
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.sis.ru.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.stroymontazh.ru[198.51.100.7] said: 550 5.1.1
    <{recipient}>: Recipient address rejected: User unknown

--4Zx1.1709456462/mx.sis.ru
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.sis.ru
X-Postfix-Queue-ID: 4Zx1
Arrival-Date: Tue,  3 Mar 2026 12:01:01 +0300 (MSK)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.stroymontazh.ru
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User
    unknown

--4Zx1.1709456462/mx.sis.ru
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: SIS Support <info@sis.ru>
To: {recipient}
Subject: =?utf-8?b?W1NJUyAjMV0g0J3QtSDQvtGC0LrRgNGL0LLQsNC10YLRgdGPINC+0YLRh9GR0YI=?=
Message-ID: {returned_id}
Auto-Submitted: auto-replied

--4Zx1.1709456462/mx.sis.ru--
"""


def dsn(returned_id: str, recipient: str = "sidorov@stroymontazh.ru", n: int = 1) -> bytes:
    text = POSTFIX_DSN.format(returned_id=returned_id, recipient=recipient, dsn_id=f"dsn{n}")
    return text.replace("\n", "\r\n").encode()


def ack_id(app, index: int = 0) -> str:
    return email.message_from_bytes(outbox(app)[index].raw)["Message-ID"]


def events(app, kind: str) -> list[Event]:
    with app.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def is_bouncing(app, address: str) -> bool:
    with app.sessions() as session:
        return bool(session.scalar(select(Contact.bouncing).where(Contact.email == address)))


def test_bounce_of_our_acknowledgement_marks_client_and_tells_engineers(app):
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    result = ingest(app, dsn(ack_id(app)))
    assert (str(result.action), result.ticket, result.reason) == ("ignored", 1, "dsn_bounce")
    assert "filed in ticket 1" in result.explanation
    assert is_bouncing(app, "sidorov@stroymontazh.ru")
    [bounce] = events(app, "bounce")
    assert (bounce.reason, bounce.ticket_id) == ("recipient_bouncing", 1)
    assert bounce.detail["status"] == "5.1.1"
    assert "User unknown" in bounce.detail["diagnostic"]
    notice_row = outbox(app)[-1]
    assert notice_row.purpose == "bounce_notice"
    notice = email.message_from_bytes(notice_row.raw)
    assert notice["To"].endswith("<ivanov@sis.ru>")
    assert notice["Auto-Submitted"] == "auto-generated"
    subject = str(email.header.make_header(email.header.decode_header(notice["Subject"])))
    assert subject.startswith("[SIS #1] письмо клиенту не доставлено")
    body = notice.get_payload(decode=True).decode()
    assert "sidorov@stroymontazh.ru" in body
    assert "5.1.1" in body
    with app.sessions() as session:
        stored = session.scalars(select(Message).where(Message.kind == "bounce_notice")).one()
        assert stored.visibility == "internal"  # never shown or relayed to the client


def test_bouncing_client_gets_no_more_automatic_replies_until_they_write(app, clock):
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    ingest(app, dsn(ack_id(app)))
    acks_before = len([row for row in outbox(app) if row.purpose == "acknowledgement"])
    clock.current += timedelta(hours=1)
    ingest(app, build_mail(subject="Новый вопрос", message_id="<req-2@stroymontazh.ru>"))
    acks = [row for row in outbox(app) if row.purpose == "acknowledgement"]
    # The client wrote again: their mailbox works, the mark is lifted, and they are answered.
    assert not is_bouncing(app, "sidorov@stroymontazh.ru")
    assert len(acks) == acks_before + 1


def test_a_bouncing_client_who_follows_up_is_unmarked(app, clock):
    first = ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    ingest(app, dsn(ack_id(app)))
    assert is_bouncing(app, "sidorov@stroymontazh.ru")
    clock.current += timedelta(hours=1)
    follow_up = ingest(
        app,
        build_mail(
            subject=f"Re: [SIS #{first.ticket}] вопрос", message_id="<req-2@stroymontazh.ru>"
        ),
    )
    assert (str(follow_up.action), follow_up.ticket) == ("follow_up", first.ticket)
    assert not is_bouncing(app, "sidorov@stroymontazh.ru")


def test_a_forged_dsn_marks_nobody(app):
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    result = ingest(app, dsn("<guessed-id@sis.ru>"))
    assert (str(result.action), result.ticket) == ("ignored", None)
    assert not is_bouncing(app, "sidorov@stroymontazh.ru")
    [bounce] = events(app, "bounce")
    assert bounce.reason == "bounce_unmatched"
    assert all(row.purpose != "bounce_notice" for row in outbox(app))


def test_only_recipients_of_the_bounced_message_are_marked(app):
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    ingest(app, build_mail(sender="kuznetsov@other.ru", message_id="<req-2@other.ru>"))
    # The report names someone else than the recipient of the returned acknowledgement.
    ingest(app, dsn(ack_id(app, 0), recipient="kuznetsov@other.ru"))
    assert not is_bouncing(app, "kuznetsov@other.ru")
    assert all(row.purpose != "bounce_notice" for row in outbox(app))


def test_a_bounced_engineer_notice_starts_no_loop(app):
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    ingest(app, dsn(ack_id(app)))
    notice_id = email.message_from_bytes(outbox(app)[-1].raw)["Message-ID"]
    before = len(outbox(app))
    result = ingest(app, dsn(notice_id, recipient="ivanov@sis.ru", n=2))
    assert (str(result.action), result.ticket) == ("ignored", 1)
    assert len(outbox(app)) == before
    assert [event.reason for event in events(app, "bounce")] == [
        "recipient_bouncing",
        "recipient_bouncing",
    ]


def test_engineer_reply_to_a_bounce_notice_threads_to_the_ticket(make_app):
    app = make_app('[security]\ntrusted_authserv_ids = ["mx.sis.ru"]\n')
    ingest(app, build_mail(message_id="<req-1@stroymontazh.ru>"))
    ingest(app, dsn(ack_id(app)))
    notice_id = email.message_from_bytes(outbox(app)[-1].raw)["Message-ID"]
    reply = build_mail(
        sender="Иван Иванов <ivanov@sis.ru>",
        subject="Re: клиенту не доставлено",
        body="Позвонил клиенту, адрес уточнил.",
        in_reply_to=notice_id,
        headers={"Authentication-Results": "mx.sis.ru; dkim=pass header.d=sis.ru"},
    )
    result = ingest(app, reply)
    assert (str(result.action), result.ticket, result.reason) == (
        "follow_up",
        1,
        "in_reply_to_match",
    )
    assert "our bounce notice in ticket 1" in result.explanation
