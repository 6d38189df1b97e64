"""The threading, guard and anti-spoofing spec as a table of real-shaped messages.

The world (tests/fixtures/threading/w*.eml, ingested in order on 2026-03-03):
  ticket 1  sidorov@stroymontazh.ru (organisation stroymontazh.ru), open
  ticket 2  petrova@mail.ru (public mail service: no organisation), open
  ticket 3  sidorov@stroymontazh.ru, closed 3 days ago   (reopen_days = 14)
  ticket 4  sidorov@stroymontazh.ru, closed 40 days ago
Engineer ivanov@sis.ru; our MX is mx.sis.ru (the trusted authserv-id).
Each case is one message ingested into a fresh copy of that world, so a new ticket is #5.
`@ACK1@` in a fixture stands for the Message-ID of our acknowledgement of ticket 1 and
`@LOOP@` for our loop marker. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from maild.app import App, initialize, open_app
from maild.clock import FixedClock
from maild.config import load_config
from maild.pipeline import IngestResult
from storage.models import Event, Message, OutboxMessage, Participant, Ticket
from tests.conftest import PG_ADMIN_URL, POSTGRES_SKIP, ROOT, write_config
from tests.test_pipeline import ingest

FIXTURES = ROOT / "tests" / "fixtures" / "threading"
WORLD = ("w1_outlook_new", "w2_mailru_new", "w3_thunderbird_new", "w4_yandex_new")
SECURITY = '[security]\ntrusted_authserv_ids = ["mx.sis.ru"]\n'


@dataclass(frozen=True)
class Case:
    fixture: str
    action: str
    ticket: int | None
    reason: str
    security: str | None = None
    """The security event the attempt leaves (on the ticket it tried to enter)."""


# fmt: off
SPEC = [
    # --- replies with our token, whatever the client did to the subject ---
    Case("c01_outlook_re_token", "follow_up", 1, "token_match"),
    Case("c02_thunderbird_re_token_norefs", "follow_up", 1, "token_match"),
    Case("c03_otvet_prefix", "follow_up", 1, "token_match"),
    Case("c04_aw_colleague", "follow_up", 1, "token_match"),
    Case("c05_tr_forward", "follow_up", 1, "token_match"),
    Case("c06_thebat_re2", "follow_up", 1, "token_match"),
    Case("c07_prefix_chain", "follow_up", 1, "token_match"),
    Case("c08_token_at_end", "follow_up", 1, "token_match"),
    Case("c09_token_spaces", "follow_up", 1, "token_match"),
    Case("c10_token_fullwidth", "follow_up", 1, "token_match"),
    Case("c11_token_lowercase", "follow_up", 1, "token_match"),
    Case("c12_token_koi8_encoded", "follow_up", 1, "token_match"),
    Case("c22_public_domain_participant", "follow_up", 2, "token_match"),
    Case("c23_address_case", "follow_up", 1, "token_match"),
    # --- references instead of a token ---
    Case("c13_subject_changed_in_reply_to_ack", "follow_up", 1, "in_reply_to_match"),
    Case("c14_references_only", "follow_up", 1, "references_match"),
    Case("c15_new_subject_participant", "new_ticket", 5, "no_thread_match"),
    # --- closed tickets ---
    Case("c24_closed_recently", "follow_up", 3, "token_match_reopened"),
    Case("c25_closed_long_ago", "new_ticket", 5, "token_match_closed_too_long"),
    Case("c26_unknown_ticket", "new_ticket", 5, "token_unknown_ticket"),
    # --- strangers and look-alikes never join ---
    Case("c16_stranger_token_hijack", "new_ticket", 5, "token_sender_not_participant",
         "token_sender_not_participant"),
    Case("c17_stranger_in_reply_to_ack", "new_ticket", 5,
         "in_reply_to_match_sender_not_participant", "in_reply_to_match_sender_not_participant"),
    Case("c18_lookalike_hyphen_domain", "new_ticket", 5, "token_sender_not_participant",
         "lookalike_domain"),
    Case("c19_lookalike_homoglyph_domain", "new_ticket", 5, "token_sender_not_participant",
         "lookalike_domain"),
    Case("c20_lookalike_subdomain", "new_ticket", 5, "token_sender_not_participant",
         "lookalike_domain"),
    Case("c21_public_domain_other_user", "new_ticket", 5, "token_sender_not_participant",
         "token_sender_not_participant"),
    # --- engineers: proven by our MX's DKIM verdict, or they are clients ---
    Case("c40_engineer_dkim_pass", "follow_up", 1, "token_match"),
    Case("c39_engineer_forged_no_auth", "new_ticket", 5, "token_sender_not_participant",
         "unverified_engineer"),
    Case("c41_engineer_untrusted_authserv", "new_ticket", 5, "token_sender_not_participant",
         "unverified_engineer"),
    Case("c42_engineer_dkim_fail", "new_ticket", 5, "token_sender_not_participant",
         "unverified_engineer"),
    Case("c43_engineer_dkim_unaligned", "new_ticket", 5, "token_sender_not_participant",
         "unverified_engineer"),
    Case("c44_engineer_forged_trusted_below", "new_ticket", 5, "token_sender_not_participant",
         "unverified_engineer"),
    # --- machines: stored, filed where they belong, never answered ---
    Case("c27_exchange_oof_ru", "ignored", 1, "auto_submitted"),
    Case("c28_oof_subject_only", "ignored", None, "autoreply_subject"),
    Case("c29_x_autoreply", "ignored", 1, "x_autoreply"),
    Case("c30_x_autorespond", "ignored", None, "x_autoreply"),
    Case("c31_precedence_bulk", "ignored", None, "precedence_bulk"),
    Case("c32_mailman_list", "ignored", None, "list_message"),
    Case("c33_list_unsubscribe_only", "ignored", None, "list_message"),
    Case("c34_postfix_dsn_to_ack", "ignored", 1, "dsn_bounce"),
    Case("c35_qmail_bounce", "ignored", None, "mailer_daemon"),
    Case("c36_empty_return_path", "ignored", None, "empty_return_path"),
    Case("c37_own_ack_looped", "ignored", 1, "loop_own_message"),
    # --- a person who asked for no auto-replies still gets a ticket ---
    Case("c38_suppress_autoreply_new", "new_ticket", 5, "no_thread_match"),
]
# fmt: on


@dataclass
class World:
    """A built world, copied for each case: a folder (config, SQLite file, artifacts, keys)
    and, on PostgreSQL, a template database."""

    folder: Path
    db_url: str
    ack1: str
    kind: str

    def copy(self, target: Path) -> tuple[App, FixedClock]:
        shutil.copytree(self.folder, target)
        db_url = self.db_url
        if self.kind == "sqlite":
            db_url = f"sqlite:///{target / 'maild.db'}"
        else:
            db_url = _clone_postgres(self.db_url)
        clock = FixedClock(NOW)
        config = load_config(write_config(target, db_url, SECURITY))
        return open_app(config, clock=clock), clock


NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def _admin():
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _clone_postgres(template_url: str) -> str:
    name = f"maild_case_{uuid.uuid4().hex[:12]}"
    template = make_url(template_url).database
    engine = _admin()
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine.dispose()
    _CLONES.append(name)
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


_CLONES: list[str] = []


def _drop_postgres(names: list[str]) -> None:
    engine = _admin()
    with engine.connect() as connection:
        for name in names:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _build_world(folder: Path, db_url: str, kind: str) -> World:
    folder.mkdir(parents=True)
    clock = FixedClock(NOW)
    config = load_config(write_config(folder, db_url, SECURITY))
    initialize(config)
    app = open_app(config, clock=clock)
    try:
        for name in WORLD:
            result = ingest(app, (FIXTURES / f"{name}.eml").read_bytes())
            assert result.action == "new_ticket", (name, result)
            clock.current += timedelta(minutes=5)
        with app.sessions.begin() as session:
            for number, days in ((3, 3), (4, 40)):
                ticket = session.get(Ticket, number)
                assert ticket is not None
                ticket.status, ticket.closed_at = "closed", NOW - timedelta(days=days)
            ack1 = session.scalars(
                select(Message.message_id).where(
                    Message.ticket_id == 1, Message.kind == "acknowledgement"
                )
            ).one()
    finally:
        app.close()
    return World(folder, db_url, f"<{ack1}>", kind)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def world(request, tmp_path_factory) -> Iterator[World]:
    if not FIXTURES.exists():
        pytest.skip("tests/fixtures/threading is missing")
    folder = tmp_path_factory.mktemp("world") / "template"
    if request.param == "sqlite":
        yield _build_world(folder, f"sqlite:///{folder / 'maild.db'}", "sqlite")
        return
    if POSTGRES_SKIP:
        pytest.skip(POSTGRES_SKIP)
    name = f"maild_world_{uuid.uuid4().hex[:12]}"
    engine = _admin()
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield _build_world(folder, url, "postgres")
    finally:
        _drop_postgres([*_CLONES, name])
        _CLONES.clear()


@pytest.fixture
def case_app(world, tmp_path) -> Iterator[tuple[App, FixedClock]]:
    app, clock = world.copy(tmp_path / "case")
    yield app, clock
    app.close()


def load_case(world: World, name: str) -> bytes:
    data = (FIXTURES / f"{name}.eml").read_bytes()
    return data.replace(b"@ACK1@", world.ack1.encode()).replace(b"@LOOP@", b"info@sis.ru")


def security_events(app: App) -> list[Event]:
    with app.sessions() as session:
        return list(session.scalars(select(Event).where(Event.kind == "security")))


@pytest.mark.parametrize("case", SPEC, ids=[case.fixture for case in SPEC])
def test_spec(world, case_app, case):
    app, _ = case_app
    result = ingest(app, load_case(world, case.fixture))
    assert (str(result.action), result.ticket, result.reason) == (
        case.action,
        case.ticket,
        case.reason,
    ), result.explanation
    assert result.explanation.startswith(f"{case.action}: "), result.explanation
    events = security_events(app)
    if case.security is None:
        assert [e.reason for e in events if e.reason != "lookalike_own_domain"] == []
        return
    assert case.security in [event.reason for event in events], [e.reason for e in events]
    attempt = next(event for event in events if event.reason == case.security)
    assert attempt.ticket_id in (1, 2)  # the ticket it tried to enter keeps the attempt


def test_spec_is_long_enough_to_read_like_a_spec():
    assert len(SPEC) >= 30
    assert len({case.fixture for case in SPEC}) == len(SPEC)


def test_every_fixture_is_in_the_spec():
    if not FIXTURES.exists():
        pytest.skip("tests/fixtures/threading is missing")
    named = {case.fixture for case in SPEC} | set(WORLD) | set(SEQUENCES)
    on_disk = {path.stem for path in FIXTURES.glob("*.eml")}
    assert on_disk - named == set()


def _result(app: App, world: World, name: str) -> IngestResult:
    return ingest(app, load_case(world, name))


SEQUENCES = ("c45_reply_all_copy_a", "c45_reply_all_copy_b", "c46_cc_from_participant_then_new_person",
             "c46b_cced_person_replies")  # fmt: skip


def test_reply_all_reaching_us_twice_is_one_message(world, case_app):
    app, _ = case_app
    first = _result(app, world, "c45_reply_all_copy_a")
    second = _result(app, world, "c45_reply_all_copy_b")
    assert (str(first.action), first.ticket) == ("follow_up", 1)
    assert (str(second.action), second.ticket) == ("duplicate", 1)
    assert second.reason in ("same_message_other_route", "same_message_already_received")
    with app.sessions() as session:
        copies = session.scalars(
            select(Message).where(Message.message_id == "reply-all-1@stroymontazh.ru")
        ).all()
    assert len(copies) == 1


def test_cc_from_a_participant_lets_the_new_person_in(world, case_app):
    app, _ = case_app
    added = _result(app, world, "c46_cc_from_participant_then_new_person")
    assert (str(added.action), added.ticket) == ("follow_up", 1)
    with app.sessions() as session:
        members = set(session.scalars(select(Participant.email).where(Participant.ticket_id == 1)))
    assert "maria.k@partner-integrator.ru" in members
    reply = _result(app, world, "c46b_cced_person_replies")
    assert (str(reply.action), reply.ticket, reply.reason) == ("follow_up", 1, "token_match")


def test_the_same_person_without_the_cc_would_have_been_refused(world, case_app):
    app, _ = case_app
    reply = _result(app, world, "c46b_cced_person_replies")
    assert (str(reply.action), reply.reason) == ("new_ticket", "token_sender_not_participant")


def test_suppressed_autoreply_gets_a_ticket_but_no_acknowledgement(world, case_app):
    app, _ = case_app
    _result(app, world, "c38_suppress_autoreply_new")
    with app.sessions() as session:
        to_client = session.scalars(
            select(OutboxMessage).where(OutboxMessage.recipient == "morozova@teplo-set.ru")
        ).all()
        suppressed = session.scalars(select(Event).where(Event.kind == "ack_suppressed")).all()
    assert to_client == []
    assert [event.reason for event in suppressed] == ["sender_suppresses_autoreply"]


def test_closed_too_long_links_the_new_ticket(world, case_app):
    app, _ = case_app
    _result(app, world, "c25_closed_long_ago")
    with app.sessions() as session:
        new = session.get(Ticket, 5)
        assert new is not None
        assert new.linked_ticket_id == 4
        linked = session.scalars(select(Event).where(Event.kind == "linked")).one()
        assert linked.ticket_id == 4


def test_bounce_of_our_acknowledgement_marks_the_client(world, case_app):
    app, _ = case_app
    _result(app, world, "c34_postfix_dsn_to_ack")
    with app.sessions() as session:
        notices = session.scalars(
            select(OutboxMessage).where(OutboxMessage.purpose == "bounce_notice")
        ).all()
    assert [row.recipient for row in notices] == ["ivanov@sis.ru"]


@pytest.mark.parametrize(
    ("fixture", "words"),
    [
        ("c40_engineer_dkim_pass", "ivanov@sis.ru: DKIM pass for sis.ru according to mx.sis.ru"),
        ("c39_engineer_forged_no_auth", "no trusted Authentication-Results and no trusted relay"),
        ("c41_engineer_untrusted_authserv", "only from untrusted mx.evil-mail.example"),
        ("c42_engineer_dkim_fail", "DKIM result from our MX is fail"),
        ("c43_engineer_dkim_unaligned", "DKIM passed only for evil-mail.example, not for sis.ru"),
        ("c44_engineer_forged_trusted_below", "DKIM result from our MX is none"),
        ("c19_lookalike_homoglyph_domain", "(stroymont\u0430zh.ru) imitates stroymontazh.ru"),
    ],
)
def test_explanations_say_what_was_proven(world, case_app, fixture, words):
    app, _ = case_app
    assert words in _result(app, world, fixture).explanation
