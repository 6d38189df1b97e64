"""Mutated real-shaped messages never make the parser raise: defects are recorded instead."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.guard import decide_guard
from parsers.classify import message_facts
from parsers.message import parse_message
from parsers.quotes import split_reply
from tests.conftest import FIXTURES
from tests.sinks import MemorySink

SEEDS = [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]


@st.composite
def mutated_messages(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        position = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        if action == "flip" and data:
            data[position] = draw(st.integers(min_value=0, max_value=255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=40))
        elif action == "delete":
            del data[position : position + draw(st.integers(min_value=1, max_value=200))]
        elif action == "truncate":
            del data[position:]
        else:
            data[position:position] = data[position : position + 300]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_messages())
def test_parser_never_raises_on_mutated_mail(raw):
    parsed = parse_message(raw, MemorySink(), max_attachment_bytes=10 * 2**20)
    assert "\x00" not in parsed.full_text
    assert "\x00" not in parsed.subject
    decide_guard(message_facts(parsed), frozenset({"info@sis.ru"}))
    split_reply(parsed.full_text)
