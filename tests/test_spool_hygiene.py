"""Smaller findings of issue 13 about what reaches the spool: the envelope's null sender, and
what a crash or a full disk leaves behind."""

from __future__ import annotations

import time

from sqlalchemy import select

from maild.daemon import Daemon
from maild.worker import drain_spool
from storage.models import InboundMessage, OutboxMessage
from storage.spool import SpoolMeta
from tests.mailbuilder import build_mail

VACATION = build_mail(
    sender="Пётр Сидоров <sidorov@stroymontazh.ru>",
    subject="Re: Не открывается отчёт",  # no Auto-Submitted, no out-of-office words
    body="Я в отпуске до 15 марта. По срочным вопросам звоните в приёмную.",
    message_id="<vacation-1@stroymontazh.ru>",
)


def settle(app, raw: bytes, meta: SpoolMeta) -> InboundMessage:
    app.spool.put(raw, meta)
    drain_spool(app.spool, app.pipeline)
    with app.sessions() as session:
        return session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()


def acknowledgements(app) -> list[str]:
    with app.sessions() as session:
        query = select(OutboxMessage.recipient).where(OutboxMessage.purpose == "acknowledgement")
        return list(session.scalars(query))


def test_null_reverse_path_is_never_answered(app):
    """RFC 5321 4.5.5: a message with MAIL FROM:<> is a notification (a vacation reply, a
    receipt) and must not be answered, whatever its headers say."""
    meta = SpoolMeta(source="smtp", received_at="2026-03-03T09:00:00Z", envelope_from="")
    row = settle(app, VACATION, meta)
    assert (row.state, row.reason) == ("ignored", "null_reverse_path")
    assert "MAIL FROM:<>" in row.explanation
    assert acknowledgements(app) == []


def test_a_real_envelope_sender_is_answered(app):
    meta = SpoolMeta(
        source="lmtp", received_at="2026-03-03T09:00:00Z", envelope_from="sidorov@stroymontazh.ru"
    )
    row = settle(app, VACATION, meta)
    assert row.state == "new_ticket"
    assert acknowledgements(app) == ["sidorov@stroymontazh.ru"]


def test_unknown_envelope_is_no_null_sender(app):
    """Mail fetched over IMAP or fed in as files has no envelope of ours: nothing is assumed."""
    meta = SpoolMeta(source="imap:main/INBOX/1/7", received_at="2026-03-03T09:00:00Z")
    assert settle(app, VACATION, meta).state == "new_ticket"


def test_leftovers_of_a_crash_are_swept_at_start(app):
    spool = app.spool
    (spool.tmp / "20260303-abc.eml.4242.tmp").write_bytes(b"half a message")
    (spool.tmp / "20260303-abc.json.4242.tmp").write_bytes(b"{")
    (spool.new / "00000000000000000001-orphan.json").write_text('{"source": "smtp"}')
    waiting = spool.put(build_mail(), SpoolMeta(source="smtp", received_at="x"))
    daemon = Daemon(app)
    daemon.start()
    try:
        assert list(spool.tmp.iterdir()) == []
        assert not (spool.new / "00000000000000000001-orphan.json").exists()
        # A message that was acknowledged (its .eml is in new/) is never swept: it is processed.
        deadline = time.monotonic() + 30
        while spool.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        daemon.stop()
    with app.sessions() as session:
        assert session.scalars(select(InboundMessage.spool_id)).all() == [waiting]
