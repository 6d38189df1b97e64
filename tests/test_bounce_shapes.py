"""Bounces and list-manager notices that are not RFC 3464 reports, by mail-server family
(issue 14). The facts are data (parsers/data/bounce_families.toml, learned from Sisimai);
each family has a real-shaped notice in tests/fixtures/bounces/<family>.eml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from maild.guard import GuardAction, decide_guard
from parsers.bounce_rules import FAMILIES_FILE, bounce_families, match_bounce_shape
from parsers.classify import message_facts
from parsers.message import parse_message
from tests.mailbuilder import build_mail
from tests.sinks import MemorySink

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"
FAMILIES = [family.name for family in bounce_families()]
PEOPLE = sorted(path.stem for path in FIXTURES.glob("person_*.eml"))
# GMX's servers run Exim and print Exim's words; Sisimai tells them apart only by
# GMX-specific failure texts, which this notice does not carry.
READS_AS = {"gmx": {"gmx", "exim"}}


def parsed(raw: bytes):
    return parse_message(raw, MemorySink(), max_attachment_bytes=2**20)


def shape_of(message):
    names = frozenset(name for name, _ in message.headers)
    sender = message.sender.email if message.sender else None
    return match_bounce_shape(sender, message.subject, message.full_text, names)


def test_every_family_is_complete_data_with_a_source():
    data = tomllib.loads(FAMILIES_FILE.read_text(encoding="utf-8"))
    names = [entry["name"] for entry in data["family"]]
    assert len(names) == len(set(names)) >= 15
    for entry in data["family"]:
        assert entry["source"].strip(), entry["name"]
        kinds = [
            k for k in ("senders", "sender_patterns", "subjects", "body", "headers") if entry.get(k)
        ]
        assert len(kinds) >= 2, f"{entry['name']}: one kind of evidence can never decide"
        for pattern in entry.get("sender_patterns", ()):
            re.compile(pattern)
        for phrase in (*entry.get("subjects", ()), *entry.get("body", ())):
            assert phrase == phrase.lower(), (entry["name"], phrase)
            assert len(phrase) >= 8, (entry["name"], phrase)


def test_every_family_has_a_fixture():
    assert sorted(FAMILIES) == sorted(
        p.stem for p in FIXTURES.glob("*.eml") if p.stem not in PEOPLE
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_family_notice_is_recognised_and_never_answered(family):
    message = parsed((FIXTURES / f"{family}.eml").read_bytes())
    shape = shape_of(message)
    assert shape is not None
    assert shape.family in READS_AS.get(family, {family})
    assert len(shape.evidence) >= 2
    decision = decide_guard(message_facts(message), frozenset())
    assert decision.action is GuardAction.IGNORE, decision


@pytest.mark.parametrize("person", PEOPLE)
def test_a_person_writing_about_bounces_is_a_request(person):
    message = parsed((FIXTURES / f"{person}.eml").read_bytes())
    assert shape_of(message) is None
    assert decide_guard(message_facts(message), frozenset()).action is GuardAction.ACCEPT


def test_hand_written_550_from_post_master_with_a_re_subject():
    """The issue's first shape: no report, no daemon name, a reply-like subject."""
    raw = build_mail(
        sender="post_master@mail.agro-tula.ru", subject="Re: [SIS #12] Подтверждение заказа",
        body="Message rejected.\n\n550 Invalid user address <zakaz@agro-tula.ru>\n",
    )  # fmt: skip
    facts = message_facts(parsed(raw))
    decision = decide_guard(facts, frozenset())
    assert (decision.action, decision.reason) == (GuardAction.IGNORE, "bounce_shape")
    assert "sender post_master@" in decision.explanation
    assert "invalid user address" in decision.explanation


def test_list_manager_loop_alert_from_an_admin_sender():
    """The issue's second shape: fml's "Loop Alert" with X-MLServer, no Precedence."""
    raw = build_mail(
        sender="partners-admin@lists.example-dealer.ru",
        subject="Loop Alert: Re: [partners:00412] Регламент", body="Loop alert. See below.",
        headers={"X-MLServer": "fml [fml 4.0.3 release (20040609/4.0.3)]"},
    )  # fmt: skip
    decision = decide_guard(message_facts(parsed(raw)), frozenset())
    assert (decision.action, decision.reason) == (GuardAction.IGNORE, "bounce_shape")


@pytest.mark.parametrize(
    "subject", ["Fwd: Mail delivery failed: returning message to sender", "Re: Undeliverable:"]
)
def test_a_person_forwarding_a_bounce_keeps_their_request(subject):
    body = (
        "Коллеги, письма к вам не доходят, вот что пришло:\n\n"
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent could not be delivered to one or more of its recipients.\n"
    )
    raw = build_mail(sender="Анна <anna@romashka.ru>", subject=subject, body=body)
    message = parsed(raw)
    assert shape_of(message) is None
    assert decide_guard(message_facts(message), frozenset()).action is GuardAction.ACCEPT


def test_an_admin_named_like_a_list_manager_is_still_a_person():
    raw = build_mail(sender="it-admin@romashka.ru", subject="Не запускается сервер лицензий")
    assert shape_of(parsed(raw)) is None
