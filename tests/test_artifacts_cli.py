"""Artifacts end to end: stored encrypted, listed, exported, refused past limits, purged."""

from __future__ import annotations

import email
import hashlib
import io
import json
import os
import stat
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from maild.app import open_app
from maild.cli import main
from maild.clock import utc_now
from maild.config import load_config
from maild.errors import ConfigError
from storage.models import Artifact, Event, InboundMessage, OutboxMessage, Ticket
from tests.mailbuilder import build_mail
from tests.test_pipeline import ingest

LOG = ("2026-03-03 10:00:00 ERROR Не удалось открыть отчёт: timeout\n" * 400).encode()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def cli(app, capsys, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--config", str(app.config.source_file)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_attachments_are_encrypted_on_disk(app):
    marker = b"PLAINTEXT-MARKER-4242"
    ingest(app, build_mail(body="Ошибка", attachments=[("server.log", LOG + marker, "text/plain")]))
    for path in app.config.artifacts.path.rglob("*"):
        if path.is_file():
            assert marker not in path.read_bytes(), path  # neither the log nor the raw message


def test_list_shows_attachments_and_archive_contents(app, capsys):
    archive = _zip({"logs/server.log": LOG, "../../etc/passwd": b"x", "Отчёт.cbx": b"<r/>"})
    ingest(app, build_mail(attachments=[("server.log", LOG, "text/plain"),
                                        ("workspace.zip", archive, "application/zip")]))  # fmt: skip
    code, out, _ = cli(app, capsys, "artifacts", "list", "1", "--json")
    assert code == 0
    items = json.loads(out)
    assert [(i["filename"], i["kind"]) for i in items] == [
        ("server.log", "log"), ("workspace.zip", "archive"),
    ]  # fmt: skip
    zipped = items[1]
    assert zipped["archive"]["format"] == "zip"
    assert zipped["archive"]["entry_count"] == 3
    assert "unsafe_paths" in zipped["flags"]
    names = {entry["name"]: entry for entry in zipped["archive"]["entries"]}
    assert names["../../etc/passwd"]["unsafe_path"] is True
    assert "Отчёт.cbx" in names
    code, out, _ = cli(app, capsys, "artifacts", "list", "1")
    assert "workspace.zip" in out
    assert "!unsafe path" in out
    assert cli(app, capsys, "artifacts", "list", "99")[0] == 1


def test_zip_bomb_is_flagged_not_unpacked(app, capsys):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("zeros.bin", bytes(200 * 1024 * 1024))
    ingest(app, build_mail(attachments=[("bomb.zip", buffer.getvalue(), "application/zip")]))
    _, out, _ = cli(app, capsys, "artifacts", "list", "1", "--json")
    (item,) = json.loads(out)
    assert "bomb_ratio" in item["flags"]
    assert item["size"] == len(buffer.getvalue())


def test_get_decrypts_exactly_and_checks(app, capsys, tmp_path):
    dump = os.urandom(300_000)
    ingest(app, build_mail(attachments=[("cubisio.dmp", dump, "application/octet-stream")]))
    _, out, _ = cli(app, capsys, "artifacts", "list", "1", "--json")
    (item,) = json.loads(out)
    target = tmp_path / "out.dmp"
    code, _, err = cli(app, capsys, "artifacts", "get", str(item["id"]), "--out", str(target))
    assert code == 0, err
    assert target.read_bytes() == dump
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    code, _, err = cli(app, capsys, "artifacts", "get", item["sha256"][:10], "--out", str(target))
    assert code == 2
    assert "exists" in err
    code, _, err = cli(
        app, capsys, "artifacts", "get", item["sha256"][:10], "--out", str(target), "--force"
    )
    assert code == 0, err
    assert cli(app, capsys, "artifacts", "get", "777", "--out", str(tmp_path / "x"))[0] == 2


def test_an_all_digit_sha256_prefix_is_a_prefix_not_a_number(app, capsys, tmp_path):
    # One sha256 in about a hundred starts with ten digits; CI once met one (PostgreSQL
    # refused it as an attachment number: integer out of range).
    data = next(
        blob for n in range(100_000)
        if hashlib.sha256(blob := f"dump {n}\n".encode() * 50).hexdigest()[:10].isdigit()
    )  # fmt: skip
    ingest(app, build_mail(attachments=[("crash.dmp", data, "application/octet-stream")]))
    prefix = hashlib.sha256(data).hexdigest()[:10]
    target = tmp_path / "out.dmp"
    code, _, err = cli(app, capsys, "artifacts", "get", prefix, "--out", str(target))
    assert code == 0, err
    assert target.read_bytes() == data


def test_get_refuses_a_damaged_artifact_and_leaves_no_file(app, capsys, tmp_path):
    ingest(app, build_mail(attachments=[("a.log", LOG, "text/plain")]))
    sha256 = hashlib.sha256(LOG).hexdigest()
    path = app.artifacts.path_for(sha256)
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    target = tmp_path / "a.log"
    code, _, err = cli(app, capsys, "artifacts", "get", sha256, "--out", str(target))
    assert code == 2
    assert "failed authentication" in err
    assert not target.exists()
    assert list(tmp_path.glob(".a.log.partial")) == []


def test_over_limit_attachment_refused_rest_processed_client_told(make_app, capsys):
    app = make_app(artifacts="max_attachment_mb = 1\nmax_message_mb = 2")
    big = os.urandom(1_500_000)
    result = ingest(app, build_mail(
        message_id="<big@client.ru>",
        attachments=[("huge.dmp", big, "application/octet-stream"), ("a.log", LOG, "text/plain")],
    ))  # fmt: skip
    assert result.action == "new_ticket"
    _, out, _ = cli(app, capsys, "artifacts", "list", "1", "--json")
    refused, accepted = json.loads(out)
    assert (refused["filename"], refused["refused"], refused["sha256"]) == (
        "huge.dmp", "attachment_too_large", None,
    )  # fmt: skip
    assert refused["size"] == len(big)
    assert accepted["refused"] is None
    with app.sessions() as session:
        ack = session.scalars(
            select(OutboxMessage).where(OutboxMessage.purpose == "acknowledgement")
        ).one()
        events = session.scalars(select(Event.kind).where(Event.ticket_id == 1)).all()
    text = email.message_from_bytes(ack.raw).get_payload(decode=True).decode()
    assert "huge.dmp" in text
    assert "не приняли" in text
    assert "attachment_refused" in events
    # A follow-up with a refused file gets a short note (it gets no acknowledgement).
    ingest(app, build_mail(
        subject="Re: [SIS #1] Не открывается отчёт", message_id="<big2@client.ru>",
        attachments=[("again.dmp", big, "application/octet-stream")],
    ))  # fmt: skip
    with app.sessions() as session:
        purposes = session.scalars(select(OutboxMessage.purpose).order_by(OutboxMessage.id)).all()
    # Each message also tells the engineer, after what the client gets.
    assert purposes == ["acknowledgement", "ticket_notice", "attachment_refused", "ticket_notice"]


def _close(app, ticket_id: int, days_ago: int) -> None:
    with app.sessions.begin() as session:
        session.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id)
            .values(status="closed", closed_at=utc_now() - timedelta(days=days_ago))
        )


def test_purge_deletes_what_only_expired_tickets_hold(app, capsys, tmp_path):
    shared = b"shared config\n" * 100
    only_old = os.urandom(50_000)
    ingest(app, build_mail(sender="a@old.ru", message_id="<o@old.ru>", attachments=[
        ("old.dmp", only_old, "application/octet-stream"), ("app.conf", shared, "text/plain")]))  # fmt: skip
    ingest(app, build_mail(sender="b@new.ru", message_id="<n@new.ru>", subject="Другое",
                           attachments=[("app.conf", shared, "text/plain")]))  # fmt: skip
    _close(app, 1, days_ago=120)
    with app.sessions() as session:
        raw_old = session.scalar(
            select(InboundMessage.raw_sha256).where(InboundMessage.ticket_id == 1)
        )
    code, out, _ = cli(app, capsys, "artifacts", "purge", "--dry-run", "--json")
    plan = json.loads(out)
    assert (code, plan["tickets"], plan["artifacts"], plan["deleted_files"]) == (0, [1], 2, 0)
    sha_old, sha_shared = hashlib.sha256(only_old).hexdigest(), hashlib.sha256(shared).hexdigest()
    assert app.artifacts.exists(sha_old)
    code, out, _ = cli(app, capsys, "artifacts", "purge", "--json")
    assert json.loads(out)["deleted_files"] == 2
    assert not app.artifacts.exists(sha_old)
    assert not app.artifacts.exists(raw_old)  # the raw message held the same bytes
    assert app.artifacts.exists(sha_shared)  # ticket 2 is open
    _, out, _ = cli(app, capsys, "tickets", "show", "1", "--json")
    purged = {
        a["filename"]: a["purged"] for m in json.loads(out)["messages"] for a in m["attachments"]
    }
    assert purged == {"old.dmp": True, "app.conf": False}
    code, _, err = cli(app, capsys, "artifacts", "get", sha_old, "--out", str(tmp_path / "never"))
    assert code == 2
    assert "purged" in err
    assert json.loads(cli(app, capsys, "artifacts", "purge", "--json")[1])["artifacts"] == 0
    # The same bytes sent again later are stored again.
    ingest(app, build_mail(sender="c@new.ru", message_id="<again@new.ru>", subject="Снова",
                           attachments=[("old.dmp", only_old, "application/octet-stream")]))  # fmt: skip
    assert app.artifacts.exists(sha_old)
    with app.sessions() as session:
        assert session.get(Artifact, sha_old).purged_at is None


def test_purge_respects_retention_days(make_app, capsys):
    app = make_app(artifacts="retention_days = 0")
    ingest(app, build_mail(attachments=[("a.log", LOG, "text/plain")]))
    _close(app, 1, days_ago=3000)
    code, _, err = cli(app, capsys, "artifacts", "purge")
    assert code == 0
    assert "kept forever" in err
    assert app.artifacts.exists(hashlib.sha256(LOG).hexdigest())


def test_init_creates_a_private_key_and_run_refuses_without_it(app):
    key_file = app.config.artifacts.key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_file.rename(key_file.with_suffix(".moved"))
    with pytest.raises(ConfigError, match="maild init"):
        open_app(load_config(app.config.source_file))


def test_large_message_through_the_cli(app, capsys, tmp_path):
    """A message above the in-memory threshold: ingested from a file, streamed, exported intact."""
    dump = os.urandom(10 * 1024 * 1024)
    path = tmp_path / "big.eml"
    path.write_bytes(build_mail(attachments=[("big.dmp", dump, "application/octet-stream")]))
    code, out, _ = cli(app, capsys, "ingest", str(path), "--json")
    assert code == 0
    assert json.loads(out)["action"] == "new_ticket"
    _, out, _ = cli(app, capsys, "artifacts", "list", "1", "--json")
    (item,) = json.loads(out)
    assert item["sha256"] == hashlib.sha256(dump).hexdigest()
    target = tmp_path / "back.dmp"
    assert cli(app, capsys, "artifacts", "get", str(item["id"]), "--out", str(target))[0] == 0
    assert target.read_bytes() == dump
