"""LMTP beside SMTP: 250 per recipient after the spool write, 552 over the limit, 451 on trouble."""

from __future__ import annotations

import shutil
import signal
import smtplib
import socket
import subprocess
import sys

import pytest

from tests.conftest import free_port, write_config
from tests.mailbuilder import build_mail
from tests.test_smtp_end_to_end import wait_for


@pytest.fixture
def listeners(tmp_path, sqlite_url):
    smtp_port, lmtp_port = free_port(), free_port()
    extra = (
        f'[inbound.lmtp]\nenabled = true\nlisten = "127.0.0.1:{lmtp_port}"\nmax_message_mb = 1\n'
    )
    config = write_config(tmp_path, sqlite_url, extra, smtp_port=smtp_port)
    maild = [sys.executable, "-m", "maild", "--config", str(config)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    process = subprocess.Popen([*maild, "run"], stderr=subprocess.DEVNULL)

    def lmtp_open():
        try:
            with socket.create_connection(("127.0.0.1", lmtp_port), timeout=1):
                return True
        except OSError:
            return False

    wait_for(lmtp_open, what="the LMTP listener")
    yield smtp_port, lmtp_port, tmp_path
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def lmtp_dialogue(port: int, recipients: list[str], data: bytes) -> list[bytes]:
    """Speak LMTP by hand: smtplib reads one reply after DATA, LMTP sends one per recipient."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rwb")

        def reply() -> bytes:
            lines = []
            while True:
                line = stream.readline()
                lines.append(line)
                if line[3:4] != b"-":
                    return b"".join(lines)

        reply()
        for command in [b"LHLO mx.sis.ru", b"MAIL FROM:<client@firm.ru>"] + [
            f"RCPT TO:<{r}>".encode() for r in recipients
        ]:
            stream.write(command + b"\r\n")
            stream.flush()
            reply()
        stream.write(b"DATA\r\n")
        stream.flush()
        reply()
        stream.write(data.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        stream.flush()
        return [reply() for _ in recipients]


def test_lmtp_answers_250_per_recipient_after_spooling(listeners):
    _, lmtp_port, folder = listeners
    answers = lmtp_dialogue(
        lmtp_port, ["info@sis.ru", "info+comment@sis.ru"], build_mail(message_id="<l1@firm.ru>")
    )
    assert [answer[:3] for answer in answers] == [b"250", b"250"]
    assert all(b"queued as" in answer for answer in answers)
    wait_for(lambda: any((folder / "outbox" / "new").glob("*")) if (folder / "outbox" / "new").exists() else False,
             what="the acknowledgement")  # fmt: skip


def test_lmtp_refuses_oversized_message_with_552(listeners):
    _, lmtp_port, _ = listeners
    big = build_mail(body="x" * (2 * 1024 * 1024))
    [answer] = lmtp_dialogue(lmtp_port, ["info@sis.ru"], big)
    assert answer.startswith(b"552")


def test_spool_trouble_is_answered_451_and_nothing_is_lost(listeners):
    smtp_port, _, folder = listeners
    spool_tmp = folder / "spool" / "tmp"
    shutil.rmtree(spool_tmp)
    spool_tmp.write_text("not a folder: writes into the spool fail now")
    with (
        smtplib.SMTP("127.0.0.1", smtp_port) as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail("client@firm.ru", ["info@sis.ru"], build_mail(message_id="<t1@firm.ru>"))
    assert refused.value.smtp_code == 451
    spool_tmp.unlink()
    spool_tmp.mkdir()
    with smtplib.SMTP("127.0.0.1", smtp_port) as client:
        assert (
            client.sendmail(
                "client@firm.ru", ["info@sis.ru"], build_mail(message_id="<t1@firm.ru>")
            )
            == {}
        )
