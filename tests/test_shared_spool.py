"""The shared spool on PostgreSQL (issue 18): what a reply waits for, large messages, and the
conversation keys read at spool time."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from maild.worker import drain_database_spool
from storage.models import Message, SpoolMessage, Ticket
from storage.shared_spool import conversation_keys
from storage.spool import SpoolMeta
from tests.mailbuilder import build_mail

META = SpoolMeta(source="smtp", received_at="2026-03-03T09:00:00+00:00")


def test_conversation_keys_from_the_header_block():
    raw = build_mail(
        message_id="<Reply.1@Firm.ru>", in_reply_to="<orig@firm.ru>",
        references="<a@x.ru> <orig@firm.ru> <b@y.ru>",
    )  # fmt: skip
    keys = conversation_keys(raw)
    assert keys.message_id == "<Reply.1@Firm.ru>"
    assert keys.refs == "<orig@firm.ru> <a@x.ru> <b@y.ru>"
    assert conversation_keys(b"Subject: none\r\n\r\nbody").message_id is None


@pytest.fixture
def pg_app(make_app, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("the shared spool is PostgreSQL's (SQLite keeps the folder spool)")
    return make_app()


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
def test_a_reply_is_not_claimed_while_its_original_is_in_hand(pg_app):
    spool = pg_app.shared_spool
    spool.put(build_mail(message_id="<orig@firm.ru>"), META)
    spool.put(build_mail(sender="other@x.ru", message_id="<other@x.ru>"), META)
    spool.put(build_mail(message_id="<reply@firm.ru>", in_reply_to="<orig@firm.ru>"), META)
    spool.put(build_mail(message_id="<orig@firm.ru>"), META)  # a second copy of the original
    with pg_app.sessions.begin() as first:
        [original] = spool.claim(first, 1)
        with pg_app.sessions.begin() as second:
            claimed = spool.claim(second, 8)
            # Only the unrelated message: the reply and the copy wait for the original.
            assert [c.row_id for c in claimed] == [original.row_id + 1]
        spool.settle(first, [original])
    with pg_app.sessions.begin() as later:
        rows = later.execute(select(SpoolMessage.message_id).order_by(SpoolMessage.id))
        assert rows.scalars().all() == ["<other@x.ru>", "<reply@firm.ru>", "<orig@firm.ru>"]
        assert len(spool.claim(later, 8)) == 3  # the original is gone: all claimable


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)  # fmt: skip
def test_a_large_message_passes_through_a_file_and_is_stored_once(pg_app):
    spool = pg_app.shared_spool
    dump = bytes(range(256)) * (9 * 1024 * 4)  # 9 MB: over the in-row limit
    raw = build_mail(
        message_id="<big@firm.ru>", attachments=[("core.dmp", dump, "application/octet-stream")]
    )
    spool.put(raw, META)
    files = list(spool.large.iterdir())
    assert len(files) == 1
    with pg_app.sessions() as session:
        assert session.scalar(select(SpoolMessage.raw)) is None
    outcome = drain_database_spool(spool, pg_app.pipeline)
    assert outcome.settled == 1
    assert not outcome.stalled
    assert list(spool.large.iterdir()) == []
    with pg_app.sessions() as session:
        assert session.scalar(select(func.count(Ticket.id))) == 1
        assert session.scalar(select(func.count(SpoolMessage.id))) == 0
        assert session.scalar(select(Message.message_id)) == "big@firm.ru"
