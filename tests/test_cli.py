"""The `maild` CLI as an admin uses it: init, ingest of every input kind, tickets list/show."""

from __future__ import annotations

import email
import email.utils
import json
import mailbox
import subprocess
import sys

import pytest

from tests.conftest import write_config
from tests.mailbuilder import build_mail


@pytest.fixture
def maild(tmp_path, db_url):
    config = write_config(tmp_path, db_url)

    def run(*args: str, stdin: bytes | None = None, check: bool = True):
        result = subprocess.run(
            [sys.executable, "-m", "maild", *args, "--config", str(config)],
            input=stdin,
            capture_output=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(result.stderr.decode())
        return result

    run("init")
    return run


def decisions(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def test_ingest_eml_files_prints_one_json_object_each(maild, tmp_path):
    first = tmp_path / "first.eml"
    first.write_bytes(build_mail(message_id="<one@firm.ru>"))
    reply = tmp_path / "reply.eml"
    reply.write_bytes(build_mail(subject="RE: [SIS #1] x", message_id="<two@firm.ru>"))
    out = decisions(maild("ingest", "--json", str(first), str(reply)))
    assert [(d["message_id"], d["action"], d["ticket"], d["reason"]) for d in out] == [
        ("one@firm.ru", "new_ticket", 1, "no_thread_match"),
        ("two@firm.ru", "follow_up", 1, "token_match"),
    ]
    assert set(out[0]) >= {"message_id", "action", "ticket", "reason", "explanation"}
    assert out[0]["explanation"] == (
        "new_ticket: no token of ours and no reference to a message we know"
    )
    assert out[1]["explanation"] == "follow_up: subject token names ticket 1"


def test_ingest_json_explains_a_refusal_and_a_replay_keeps_it(maild, tmp_path):
    first = tmp_path / "first.eml"
    first.write_bytes(build_mail(message_id="<one@firm.ru>"))
    hijack = tmp_path / "hijack.eml"
    hijack.write_bytes(
        build_mail(sender="x@evil.example", subject="Re: [SIS #1] x", message_id="<h@evil.ex>")
    )
    maild("ingest", str(first))
    [refused] = decisions(maild("ingest", "--json", str(hijack)))
    assert (refused["action"], refused["ticket"], refused["reason"]) == (
        "new_ticket",
        2,
        "token_sender_not_participant",
    )
    assert refused["explanation"] == (
        "new_ticket: subject token names ticket 1, but x@evil.example is not a participant"
        " of ticket 1"
    )
    victim = json.loads(maild("tickets", "show", "1", "--json").stdout)
    [security] = [e for e in victim["events"] if e["kind"] == "security"]
    assert (security["reason"], security["actor"]) == (
        "token_sender_not_participant",
        "x@evil.example",
    )
    assert security["explanation"] == refused["explanation"]
    shown = maild("tickets", "show", "1").stdout.decode()
    assert "security [token_sender_not_participant]: new_ticket: subject token" in shown


def test_ingest_same_file_twice_reports_duplicate(maild, tmp_path):
    path = tmp_path / "m.eml"
    path.write_bytes(build_mail(message_id="<same@firm.ru>"))
    maild("ingest", str(path))
    [again] = decisions(maild("ingest", "--json", str(path)))
    assert (again["action"], again["ticket"]) == ("duplicate", 1)


def test_ingest_maildir_mbox_and_stdin(maild, tmp_path):
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(build_mail(subject="из maildir", message_id="<md@firm.ru>"))
    mbox_path = tmp_path / "archive.mbox"
    archive = mailbox.mbox(mbox_path, create=True)
    for n in range(3):
        archive.add(build_mail(subject=f"из mbox {n}", message_id=f"<mb{n}@firm.ru>"))
    archive.close()
    out = decisions(maild("ingest", "--json", str(tmp_path / "Maildir"), str(mbox_path)))
    assert [d["message_id"] for d in out] == [
        "md@firm.ru",
        "mb0@firm.ru",
        "mb1@firm.ru",
        "mb2@firm.ru",
    ]
    [piped] = decisions(maild("ingest", "--json", "-", stdin=build_mail(message_id="<in@firm.ru>")))
    assert (piped["message_id"], piped["action"], piped["ticket"]) == (
        "in@firm.ru",
        "new_ticket",
        5,
    )


def test_ingest_delivers_acknowledgements_to_the_maildir_outbox(maild, tmp_path):
    path = tmp_path / "m.eml"
    path.write_bytes(build_mail())
    result = maild("ingest", str(path))
    assert "1 new_ticket" in result.stderr.decode()
    delivered = [
        email.utils.parseaddr(email.message_from_bytes(path.read_bytes())["To"])[1]
        for path in sorted((tmp_path / "outbox" / "new").iterdir())
    ]
    # The client's acknowledgement, then the notice to the config's one engineer.
    assert delivered == ["sidorov@stroymontazh.ru", "ivanov@sis.ru"]


def test_ingest_missing_path_is_a_clear_error(maild, tmp_path):
    result = maild("ingest", str(tmp_path / "nope.eml"), check=False)
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr.decode()


def test_tickets_list_and_show_json(maild, tmp_path):
    path = tmp_path / "m.eml"
    log = b"2026-03-03 10:00:00 ERROR boom\n" * 10
    path.write_bytes(build_mail(attachments=[("app.log", log, "text/plain")], cc="boss@firm.ru"))
    maild("ingest", str(path))
    [row] = json.loads(maild("tickets", "list", "--json").stdout)
    assert (row["id"], row["token"], row["status"]) == (1, "[SIS #1]", "new")
    ticket = json.loads(maild("tickets", "show", "1", "--json").stdout)
    assert {"id", "token", "subject", "status", "criticality", "organization", "requester",
            "participants", "messages", "sla"} <= set(ticket)  # fmt: skip
    assert ticket["organization"] == "stroymontazh.ru"
    assert ticket["sla"]["first_response_at"] is None
    first = ticket["sla"]["first_response"]  # the public offer: business hours, Moscow time
    assert (ticket["sla"]["mode"], ticket["sla"]["contract"]) == ("business", None)
    assert first["due"].endswith("+03:00")
    assert (
        first["target_minutes"]
        == 60 * {"critical": 1, "high": 4, "normal": 8, "low": 24}[ticket["criticality"]]
    )
    assert ticket["requester"]["email"] == "sidorov@stroymontazh.ru"
    assert {p["email"] for p in ticket["participants"]} == {
        "sidorov@stroymontazh.ru",
        "boss@firm.ru",
    }
    incoming, outgoing = ticket["messages"]
    assert (incoming["direction"], incoming["visibility"]) == ("in", "public")
    assert incoming["text"].startswith("Добрый день!")
    [attachment] = incoming["attachments"]
    assert (attachment["filename"], attachment["kind"], attachment["size"]) == (
        "app.log",
        "log",
        len(log),
    )
    assert len(attachment["sha256"]) == 64
    assert outgoing["direction"] == "out"
    assert "[SIS #1]" in outgoing["text"]


def test_tickets_show_human_readable_and_unknown(maild, tmp_path):
    path = tmp_path / "m.eml"
    path.write_bytes(build_mail())
    maild("ingest", str(path))
    shown = maild("tickets", "show", "1").stdout.decode()
    assert shown.startswith("[SIS #1] Не открывается отчёт")
    missing = maild("tickets", "show", "99", check=False)
    assert missing.returncode == 1
    assert "no ticket 99" in missing.stderr.decode()


def test_commands_before_init_say_what_to_do(tmp_path, sqlite_url):
    config = write_config(tmp_path, sqlite_url)
    result = subprocess.run(
        [sys.executable, "-m", "maild", "--config", str(config), "tickets", "list"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "run `maild init` first" in result.stderr
