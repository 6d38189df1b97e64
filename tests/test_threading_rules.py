"""threading_rules: pure decisions, a table that reads like the spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from threading_rules.decide import (
    KnownMessage,
    ThreadAction,
    ThreadContext,
    ThreadFacts,
    TicketView,
    decide_thread,
)
from threading_rules.token import find_ticket_numbers, strip_tokens

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
OPEN = TicketView(1, "open", None, frozenset({"client@firm.ru"}), "firm.ru")
PRIVATE = TicketView(2, "open", None, frozenset({"user@mail.ru"}), None)
CLOSED_RECENTLY = TicketView(
    3, "closed", NOW - timedelta(days=2), frozenset({"client@firm.ru"}), "firm.ru"
)
CLOSED_LONG_AGO = TicketView(
    4, "closed", NOW - timedelta(days=40), frozenset({"client@firm.ru"}), "firm.ru"
)
TICKETS = {t.id: t for t in (OPEN, PRIVATE, CLOSED_RECENTLY, CLOSED_LONG_AGO)}
KNOWN = {
    "ack1@sis.ru": KnownMessage(1, "out", "acknowledgement"),
    "ack2@sis.ru": KnownMessage(2, "out", "acknowledgement"),
    "old@firm.ru": KnownMessage(4, "in", "mail", "client@firm.ru"),
    "notice3@sis.ru": KnownMessage(3, "out", "bounce_notice"),
}


def facts(sender="client@firm.ru", tokens=(), in_reply_to=(), references=(), **extra):
    return ThreadFacts(
        sender,
        sender.rpartition("@")[2],
        tuple(tokens),
        tuple(in_reply_to),
        tuple(references),
        **extra,
    )


CTX = ThreadContext(tickets=TICKETS, known_message_ids=KNOWN, now=NOW, reopen_days=14)

CASES = [
    ("token of own ticket", facts(tokens=[1]), ThreadAction.FOLLOW_UP, 1, "token_match"),
    (
        "colleague from organisation",
        facts(sender="boss@firm.ru", tokens=[1]),
        ThreadAction.FOLLOW_UP,
        1,
        "token_match",
    ),
    (
        "stranger with token",
        facts(sender="x@evil.example", tokens=[1]),
        ThreadAction.NEW_TICKET,
        None,
        "token_sender_not_participant",
    ),
    (
        "same public domain is no organisation",
        facts(sender="other@mail.ru", tokens=[2]),
        ThreadAction.NEW_TICKET,
        None,
        "token_sender_not_participant",
    ),
    (
        "look-alike domain",
        facts(sender="client@flrm.ru", tokens=[1]),
        ThreadAction.NEW_TICKET,
        None,
        "token_sender_not_participant",
    ),
    (
        "subdomain is not the organisation",
        facts(sender="a@evil.firm.ru.example", tokens=[1]),
        ThreadAction.NEW_TICKET,
        None,
        "token_sender_not_participant",
    ),
    (
        "unknown ticket number",
        facts(tokens=[999]),
        ThreadAction.NEW_TICKET,
        None,
        "token_unknown_ticket",
    ),
    (
        "in-reply-to our ack",
        facts(in_reply_to=["ack1@sis.ru"]),
        ThreadAction.FOLLOW_UP,
        1,
        "in_reply_to_match",
    ),
    (
        "in-reply-to from stranger",
        facts(sender="x@evil.example", in_reply_to=["ack1@sis.ru"]),
        ThreadAction.NEW_TICKET,
        None,
        "in_reply_to_match_sender_not_participant",
    ),
    (
        "references last match wins",
        facts(references=["nope@x", "ack1@sis.ru"]),
        ThreadAction.FOLLOW_UP,
        1,
        "references_match",
    ),
    (
        "unknown references",
        facts(references=["nope@x"]),
        ThreadAction.NEW_TICKET,
        None,
        "no_thread_match",
    ),
    ("nothing at all", facts(), ThreadAction.NEW_TICKET, None, "no_thread_match"),
    (
        "token beats references",
        facts(tokens=[1], references=["ack2@sis.ru"]),
        ThreadAction.FOLLOW_UP,
        1,
        "token_match",
    ),
    (
        "unknown token falls back to in-reply-to",
        facts(tokens=[999], in_reply_to=["ack1@sis.ru"]),
        ThreadAction.FOLLOW_UP,
        1,
        "in_reply_to_match",
    ),
    ("closed recently reopens", facts(tokens=[3]), ThreadAction.REOPEN, 3, "token_match_reopened"),
    (
        "closed long ago links new",
        facts(tokens=[4]),
        ThreadAction.NEW_TICKET,
        None,
        "token_match_closed_too_long",
    ),
    (
        "reference to long-closed links new",
        facts(in_reply_to=["old@firm.ru"]),
        ThreadAction.NEW_TICKET,
        None,
        "in_reply_to_match_closed_too_long",
    ),
    (
        "two tokens, first foreign second own",
        facts(sender="user@mail.ru", tokens=[1, 2]),
        ThreadAction.FOLLOW_UP,
        2,
        "token_match",
    ),
]


@pytest.mark.parametrize(
    ("name", "message", "action", "ticket", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_decide_thread(name, message, action, ticket, reason):
    decision = decide_thread(message, CTX)
    assert (decision.action, decision.ticket, decision.reason) == (action, ticket, reason)


def test_closed_too_long_links_old_ticket():
    assert decide_thread(facts(tokens=[4]), CTX).linked_ticket == 4


def test_refusal_records_security_reason():
    assert (
        decide_thread(facts(sender="x@evil.example", tokens=[1]), CTX).security_reason
        == "token_sender_not_participant"
    )


@pytest.mark.parametrize(
    ("subject", "numbers"),
    [
        ("[SIS #123] Отчёт", (123,)),
        ("RE: Fwd: Ответ: [SIS #7] x", (7,)),
        ("Re: проблема [sis #7]", (7,)),
        ("AW: [ SIS  # 42 ]", (42,)),
        ("RE[2]: [SIS＃15] full-width", (15,)),
        ("[SIS №16] номер", (16,)),
        ("[SIS #1] and [SIS #2] and [SIS #1]", (1, 2)),
        ("[ABC #5] other prefix", ()),
        ("SIS #5 without brackets", ()),
        ("[SIS #] empty", ()),
    ],
)
def test_find_ticket_numbers(subject, numbers):
    assert find_ticket_numbers(subject, "SIS") == numbers


def test_strip_tokens():
    assert strip_tokens("RE: [SIS #1]  Отчёт", "SIS") == "RE: Отчёт"


MORE_CASES = [
    (
        "proven engineer joins any ticket",
        facts(sender="ivanov@sis.ru", tokens=[2], is_engineer=True),
        ThreadAction.FOLLOW_UP,
        2,
        "token_match",
    ),
    (
        "unproven engineer address is no participant",
        facts(sender="client@firm.ru", tokens=[1], claims_engineer=True),
        ThreadAction.NEW_TICKET,
        None,
        "token_sender_not_participant",
    ),
    (
        "reply to our bounce notice threads",
        facts(sender="ivanov@sis.ru", in_reply_to=["notice3@sis.ru"], is_engineer=True),
        ThreadAction.REOPEN,
        3,
        "in_reply_to_match_reopened",
    ),
    (
        "bounce returning our acknowledgement",
        facts(sender="mailer-daemon@mx.example", returned_message_ids=("ack2@sis.ru",)),
        ThreadAction.FOLLOW_UP,
        2,
        "returned_message_match",
    ),
    (
        "returned id of a received message proves nothing",
        facts(sender="mailer-daemon@mx.example", returned_message_ids=("old@firm.ru",)),
        ThreadAction.NEW_TICKET,
        None,
        "no_thread_match",
    ),
    (
        "full-width token",
        facts(tokens=find_ticket_numbers("Re: ［SIS ＃1］ отчёт", "SIS")),
        ThreadAction.FOLLOW_UP,
        1,
        "token_match",
    ),
]


@pytest.mark.parametrize(
    ("name", "message", "action", "ticket", "reason"),
    MORE_CASES,
    ids=[c[0] for c in MORE_CASES],
)
def test_decide_thread_more(name, message, action, ticket, reason):
    decision = decide_thread(message, CTX)
    assert (decision.action, decision.ticket, decision.reason) == (action, ticket, reason)
    shown_as = "follow_up" if action is ThreadAction.REOPEN else action  # as ingest says
    assert decision.explanation.startswith(f"{shown_as}: ")


def test_every_decision_explains_itself():
    for _, message, *_ in CASES + MORE_CASES:
        assert decide_thread(message, CTX).explanation


def test_explanation_names_the_header_and_our_message():
    decision = decide_thread(facts(in_reply_to=["ack1@sis.ru"]), CTX)
    assert decision.explanation == (
        "follow_up: In-Reply-To <ack1@sis.ru> is our acknowledgement in ticket 1"
    )


def test_lookalike_refusal_names_the_imitated_domain():
    decision = decide_thread(facts(sender="client@firm-ru.com", tokens=[1]), CTX)
    assert decision.security_reason == "lookalike_domain"
    assert decision.refused_ticket == 1
    assert "firm-ru.com imitates firm.ru" in decision.explanation


def test_unproven_engineer_refusal_is_recorded_as_such():
    decision = decide_thread(facts(sender="ivanov@sis.ru", tokens=[1], claims_engineer=True), CTX)
    assert decision.security_reason == "unverified_engineer"


def _same(sender="client@firm.ru", text="Версия 3.2.1,\nлог приложен."):
    return KnownMessage(1, "in", "mail", sender, text)


@pytest.mark.parametrize(
    ("known", "expected"),
    [
        (_same(), ThreadAction.DUPLICATE),
        (_same(text="Версия 3.2.1, лог   приложен."), ThreadAction.DUPLICATE),
        (_same(sender="other@firm.ru"), ThreadAction.FOLLOW_UP),
        (_same(text="Совсем другое письмо"), ThreadAction.FOLLOW_UP),
    ],
)
def test_same_message_by_another_route(known, expected):
    ctx = ThreadContext(TICKETS, KNOWN, NOW, 14, same_message=known)
    message = facts(tokens=[1], message_id="r@firm.ru", text="Версия 3.2.1, лог приложен.")
    assert decide_thread(message, ctx).action is expected
