"""The SMTP/LMTP listener under attack (issue 13): session caps in all and per peer, the idle
timeout, RCPT per transaction, the configured greeting, the Received trace line against a
hostile HELO, descriptors kept for the worker under a low file limit, and logs that stay short
while accept() runs out of descriptors. Real sockets on 127.0.0.1 throughout; the caps are
small so every test takes seconds."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import resource
import signal
import smtplib
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import closing, suppress
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from maild.clock import FixedClock
from maild.config import SmtpInboundConfig
from maild.limits import DescriptorReserve, LogThrottle, Refusal, SessionGate
from maild.sources.smtp import (
    SESSION_REFUSED,
    SpoolHandler,
    make_controller,
    trace_header,
)
from storage.models import InboundMessage
from storage.spool import Spool, SpoolMeta
from tests.conftest import ROOT, free_port, write_config
from tests.daemon import running_daemon, wait_for
from tests.mailbuilder import build_mail

HOSTNAME = "mx-test.sis.ru"
NOW = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
IDLE_SECONDS = 2
REPLY_TIMEOUT = 5.0


# --- helpers: a raw client that reads the first reply, and a spool reader ---


def open_session(port: int, source: str = "127.0.0.1") -> tuple[socket.socket, bytes]:
    """Connect from `source` (any 127.x.y.z is a loopback address of its own on Linux) and
    read the server's first line."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=REPLY_TIMEOUT, source_address=(source, 0)
    )
    return sock, read_line(sock)


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def read_reply(sock: socket.socket) -> bytes:
    """A whole reply, continuation lines (`250-...`) included."""
    reply = line = read_line(sock)
    while line[3:4] == b"-":
        line = read_line(sock)
        reply += line
    return reply


def deliver_by_hand(sock: socket.socket, commands: list[bytes], raw: bytes) -> bytes:
    """Speak the dialogue on a raw socket (greeting already read), as no library would let
    a test: commands exactly as given, then DATA; the reply to the final dot."""
    for command in [*commands, b"DATA"]:
        sock.sendall(command + b"\r\n")
        reply = read_reply(sock)
        assert reply[:1] in (b"2", b"3"), (command, reply)
    sock.sendall(raw + b"\r\n.\r\n")
    return read_line(sock)


def is_closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def queued_id(reply: bytes) -> str:
    assert reply.startswith(b"2.0.0 Ok: queued as "), reply
    return reply.decode().rsplit(" ", 1)[1]


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


# --- an in-process listener with small caps: the protocol side, without a worker ---


@pytest.fixture(scope="module")
def listener(tmp_path_factory):
    spool = Spool(tmp_path_factory.mktemp("spool"))
    spool.ensure()
    config = SmtpInboundConfig(
        "127.0.0.1", free_port(), lmtp=False, max_message_bytes=1024 * 1024,
        hostname=HOSTNAME, max_sessions=5, max_sessions_per_peer=3,
        idle_timeout_seconds=IDLE_SECONDS, max_recipients=3,
    )  # fmt: skip
    handler = SpoolHandler(
        spool, frozenset({"info@sis.ru"}), lambda: None, FixedClock(NOW), max_recipients=3
    )
    controller = make_controller(config, handler)
    controller.start()
    yield controller, spool
    controller.stop()


@pytest.fixture
def smtp(listener):
    """The listener with no session open (the previous test's are counted out first)."""
    controller, spool = listener
    wait_for(lambda: controller.gate.open_sessions == 0, timeout=5, what="sessions closed")
    yield controller, spool
    wait_for(lambda: controller.gate.open_sessions == 0, timeout=5, what="sessions closed")


def test_greeting_and_ehlo_name_the_configured_host(smtp):
    controller, _ = smtp
    with smtplib.SMTP("127.0.0.1", controller.port, timeout=REPLY_TIMEOUT) as client:
        code, ehlo = client.ehlo("client.example")
    assert code == 250
    assert ehlo.splitlines()[0] == HOSTNAME.encode()
    sock, greeting = open_session(controller.port)
    with closing(sock):
        assert greeting == f"220 {HOSTNAME} maild\r\n".encode()


def test_sessions_over_the_caps_get_421_and_a_client_is_served_after_some_close(smtp):
    controller, spool = smtp
    peer_a = [open_session(controller.port, "127.0.0.2") for _ in range(3)]
    peer_b = [open_session(controller.port, "127.0.0.3") for _ in range(2)]
    try:
        assert all(greeting.startswith(b"220 ") for _, greeting in peer_a + peer_b)
        wait_for(lambda: controller.gate.open_sessions == 5, timeout=5, what="five sessions")

        fourth_from_peer, refused = open_session(controller.port, "127.0.0.2")
        with closing(fourth_from_peer):
            expected = SESSION_REFUSED[Refusal.TOO_MANY_FROM_PEER].format(hostname=HOSTNAME)
            assert refused == f"{expected}\r\n".encode()
            assert refused.startswith(b"421 4.7.0 ")
            assert is_closed_by_server(fourth_from_peer)  # no SMTP dialogue at all

        sixth, refused = open_session(controller.port, "127.0.0.1")
        with closing(sixth):
            too_many = f"421 4.7.0 {HOSTNAME} too many connections, try again later\r\n"
            assert refused == too_many.encode()
            assert is_closed_by_server(sixth)
        assert controller.gate.open_sessions == 5  # the refused ones were never counted

        for sock, _ in peer_b:  # two sessions end; the other peer's three stay open
            sock.close()
        wait_for(lambda: controller.gate.open_sessions == 3, timeout=5, what="two counted out")
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=REPLY_TIMEOUT) as client:
            client.ehlo("client.example")
            client.mail("client@firm.ru")
            client.rcpt("info@sis.ru")
            code, reply = client.data(build_mail(message_id="<after-421@firm.ru>"))
    finally:
        for sock, _ in peer_a + peer_b:
            sock.close()
    assert code == 250
    assert queued_id(reply) in spool.pending()


def test_a_silent_session_is_closed_after_the_idle_timeout(smtp):
    controller, _ = smtp
    sock, greeting = open_session(controller.port)
    with closing(sock):
        assert greeting.startswith(b"220 ")
        started = time.monotonic()
        sock.settimeout(IDLE_SECONDS + 5)
        assert is_closed_by_server(sock)
        elapsed = time.monotonic() - started
    assert IDLE_SECONDS - 0.5 < elapsed < IDLE_SECONDS + 4
    wait_for(lambda: controller.gate.open_sessions == 0, timeout=5, what="the session counted out")


def test_recipients_past_the_cap_get_452_and_the_message_goes_to_the_first(smtp):
    controller, spool = smtp
    accepted = ["info@sis.ru", "info+a@sis.ru", "info+b@sis.ru"]
    with smtplib.SMTP("127.0.0.1", controller.port, timeout=REPLY_TIMEOUT) as client:
        client.ehlo("client.example")
        client.mail("client@firm.ru")
        assert [client.rcpt(address)[0] for address in accepted] == [250, 250, 250]
        code, reply = client.rcpt("info+c@sis.ru")
        assert (code, reply) == (452, b"4.5.3 Too many recipients")
        assert client.rcpt("someone@elsewhere.example")[0] == 550  # refusal still says why
        code, reply = client.data(build_mail(message_id="<many@firm.ru>"))
    assert code == 250
    entry = spool.read(queued_id(reply))
    assert entry.meta.recipients == tuple(accepted)
    received = email.message_from_bytes(entry.raw.read_all())["Received"]
    assert " for " not in received  # several recipients: none is named


def test_the_spooled_message_starts_with_our_received_line(smtp):
    controller, spool = smtp
    raw = build_mail(message_id="<trace@firm.ru>")
    with smtplib.SMTP("127.0.0.1", controller.port, timeout=REPLY_TIMEOUT) as client:
        client.ehlo("client.example")
        client.mail("client@firm.ru")
        client.rcpt("info@sis.ru")
        code, reply = client.data(raw)
    assert code == 250
    entry = spool.read(queued_id(reply))
    spooled = entry.raw.read_all()
    assert spooled.startswith(b"Received: from client.example ([127.0.0.1]) by ")
    trace = spooled[: spooled.index(b"\r\nFrom:") + 2]
    unfolded = trace.replace(b"\r\n\t", b" ").rstrip(b"\r\n")
    assert unfolded.startswith(
        f"Received: from client.example ([127.0.0.1]) by {HOSTNAME} (maild) with ESMTP id ".encode()
    )
    assert unfolded.endswith(b" for <info@sis.ru>; Tue, 03 Mar 2026 09:00:00 +0000")
    assert all(len(line) <= 78 for line in trace.split(b"\r\n"))
    assert spooled == trace + raw  # the client's bytes follow, untouched
    assert entry.meta.received_at == NOW.isoformat()  # the app's clock, not the wall's
    assert entry.meta.peer == "127.0.0.1"


def test_a_helo_with_line_breaks_adds_no_header_line(smtp):
    controller, spool = smtp
    sock, greeting = open_session(controller.port)
    with closing(sock):
        assert greeting.startswith(b"220 ")
        # aiosmtpd reads a command up to LF: a bare CR, controls and header syntax ride along.
        commands = [
            b"EHLO evil.example\rX-Injected: yes\x0b\x00 (by trusted.example; x)",
            b"MAIL FROM:<client@firm.ru>",
            b"RCPT TO:<info@sis.ru>",
        ]
        done = deliver_by_hand(sock, commands, build_mail(message_id="<helo@firm.ru>"))
        assert done.startswith(b"250 "), done
    spooled = spool.read(queued_id(done[4:].rstrip())).raw.read_all()
    message = email.message_from_bytes(spooled, policy=email.policy.default)
    assert message["X-Injected"] is None
    assert b"\rX" not in spooled
    assert spooled.count(b"X-Injected") == 1  # inside the Received line, as harmless text
    lines = header_block(spooled).split(b"\r\n")
    assert lines[0] == b"Received: from evil.exampleX-Injected:?yes??by?trusted.example??x?"
    assert lines[1] == b"\t([127.0.0.1]) by mx-test.sis.ru (maild) with ESMTP id " + lines[1][-12:]
    assert lines[2].startswith(b"\tfor <info@sis.ru>; Tue, 03 Mar 2026 09:00:00 +0000")
    assert lines[3].startswith(b"From: ")


def test_a_quoted_local_part_with_a_cr_is_no_plus_address(smtp):
    controller, _ = smtp
    sock, _ = open_session(controller.port)
    with closing(sock):
        for command in [b"EHLO client.example", b"MAIL FROM:<client@firm.ru>"]:
            sock.sendall(command + b"\r\n")
            assert read_reply(sock).startswith(b"250")
        sock.sendall(b'RCPT TO:<"info+a\rX-Injected"@sis.ru>\r\n')
        assert read_reply(sock).startswith(b"550 5.1.1 ")


def test_an_lmtp_listener_has_the_same_gate_and_says_lmtp(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.ensure()
    config = SmtpInboundConfig(
        "127.0.0.1", free_port(), lmtp=True, max_message_bytes=1024 * 1024,
        hostname=HOSTNAME, max_sessions=2, max_sessions_per_peer=2, max_recipients=5,
    )  # fmt: skip
    handler = SpoolHandler(
        spool, frozenset({"info@sis.ru"}), lambda: None, FixedClock(NOW), max_recipients=5
    )
    controller = make_controller(config, handler)
    controller.start()
    try:
        wait_for(lambda: controller.gate.open_sessions == 0, timeout=5, what="start-up probe")
        first, greeting = open_session(controller.port)
        second, _ = open_session(controller.port)
        with closing(first), closing(second):
            assert greeting == f"220 {HOSTNAME} maild\r\n".encode()
            third, refused = open_session(controller.port)
            with closing(third):
                assert refused.startswith(b"421 4.7.0 ")
            commands = [b"LHLO mx.sis.ru", b"MAIL FROM:<a@firm.ru>", b"RCPT TO:<info@sis.ru>"]
            done = deliver_by_hand(first, commands, build_mail(message_id="<lmtp@firm.ru>"))
            assert done.startswith(b"250 "), done
        spooled = spool.read(queued_id(done[4:].rstrip())).raw.read_all()
        assert b" (maild) with LMTP id " in spooled.split(b"\r\nFrom:")[0].replace(b"\r\n\t", b" ")
    finally:
        controller.stop()


# --- pure parts: the trace line, the gate, the throttle ---


@pytest.mark.parametrize(
    "helo",
    [
        "evil\r\nX-Injected: yes",
        "evil\nX-Injected: yes",
        "evil\rX-Injected: yes",
        "\x00\x1b[2J\x1b]0;title\x07",
        "a (b) ; by trusted.example",
        "почта.рф",
        "",
    ],
    ids=["crlf", "lf", "cr", "terminal-escapes", "comment-syntax", "non-ascii", "empty"],
)
def test_trace_header_is_one_header_whatever_the_helo(helo):
    line = trace_header(
        helo=helo, peer="192.0.2.7", hostname=HOSTNAME, protocol="ESMTP",
        trace_id="a1b2c3", recipients=["info@sis.ru"], when=NOW,
    )  # fmt: skip
    assert line.endswith(b"\r\n")
    body = line[:-2]
    assert b"\n" not in body.replace(b"\r\n\t", b"")
    assert b"\r" not in body.replace(b"\r\n\t", b"")
    parsed = email.message_from_bytes(line + b"\r\nbody\r\n", policy=email.policy.default)
    assert list(parsed.keys()) == ["Received"]
    assert "X-Injected" not in parsed
    assert all(32 <= byte < 127 or byte in b"\r\n\t" for byte in line)


def test_trace_header_folds_at_78_and_names_a_single_recipient_only():
    long_name = "relay-with-a-rather-long-name.department.example-corporation.example"
    one = trace_header(
        helo=long_name, peer="::ffff:10.20.1.7", hostname=long_name, protocol="ESMTP",
        trace_id="0123456789ab", recipients=["info+comment@sis.ru"], when=NOW,
    )  # fmt: skip
    assert all(len(line) <= 78 for line in one.split(b"\r\n"))
    unfolded = one.replace(b"\r\n\t", b" ").rstrip(b"\r\n")
    assert (
        unfolded
        == (
            f"Received: from {long_name} ([10.20.1.7]) by {long_name} (maild) with ESMTP"
            " id 0123456789ab for <info+comment@sis.ru>; Tue, 03 Mar 2026 09:00:00 +0000"
        ).encode()
    )
    two = trace_header(
        helo="mx.firm.ru", peer="2001:db8::1", hostname=HOSTNAME, protocol="LMTP",
        trace_id="x", recipients=["info@sis.ru", "info+comment@sis.ru"], when=NOW,
    )  # fmt: skip
    assert b"[IPv6:2001:db8::1]" in two
    assert b" for " not in two
    assert b"with LMTP id x; Tue" in two.replace(b"\r\n\t", b" ")


def test_the_gate_counts_per_peer_and_keeps_descriptors_in_reserve():
    room = {"left": True}
    reserve = DescriptorReserve(64, count=lambda: 0 if room["left"] else 1000, limit=lambda: 1024)
    gate = SessionGate(max_sessions=3, max_per_peer=2, descriptors=reserve)
    assert [gate.admit("10.0.0.1"), gate.admit("10.0.0.1")] == [None, None]
    assert gate.admit("10.0.0.1") is Refusal.TOO_MANY_FROM_PEER
    assert gate.admit("10.0.0.2") is None
    assert gate.admit("10.0.0.3") is Refusal.TOO_MANY_SESSIONS
    gate.release("10.0.0.1")
    room["left"] = False
    assert gate.admit("10.0.0.3") is Refusal.DESCRIPTORS_LOW
    gate.release("10.0.0.1")
    gate.release("10.0.0.2")
    assert (gate.open_sessions, gate.sessions_from("10.0.0.1")) == (0, 0)
    assert DescriptorReserve(64, count=lambda: 959, limit=lambda: 1024).has_room()
    assert not DescriptorReserve(64, count=lambda: 960, limit=lambda: 1024).has_room()


def test_the_throttle_logs_one_line_per_window_with_a_count(caplog):
    now = [100.0]
    throttle = LogThrottle(logging.getLogger("maild.test"), 60, monotonic=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="maild.test"):
        for _ in range(1000):
            throttle.log(logging.WARNING, "accept failed: %s", "Too many open files")
            now[0] += 0.01  # 1,000 failures in 10 s
        now[0] += 60
        throttle.log(logging.WARNING, "accept failed: %s", "Too many open files")
    assert [record.getMessage() for record in caplog.records] == [
        "accept failed: Too many open files",
        "accept failed: Too many open files (999 more like it since the previous line, not logged)",
    ]
    assert all(record.exc_info is None for record in caplog.records)


def test_inside_a_loop_the_tail_of_a_storm_is_logged_when_the_window_ends(caplog):
    async def storm() -> None:
        throttle = LogThrottle(logging.getLogger("maild.test"), 0.2)
        for n in range(100):
            throttle.log(logging.WARNING, "accept failed: %s", n)
        await asyncio.sleep(0.5)

    with caplog.at_level(logging.WARNING, logger="maild.test"):
        asyncio.run(storm())
    assert [record.getMessage() for record in caplog.records] == [
        "accept failed: 0",
        "accept failed: 99 (98 more like it since the previous line, not logged)",
    ]


def test_spool_write_failures_are_451_with_one_log_line_and_no_traceback(smtp, caplog):
    controller, spool = smtp
    spool.tmp.rmdir()
    spool.tmp.write_text("not a folder: every spool write fails now")
    try:
        with caplog.at_level(logging.WARNING, logger="maild.sources.smtp"):
            for n in range(5):
                with smtplib.SMTP("127.0.0.1", controller.port, timeout=REPLY_TIMEOUT) as client:
                    client.ehlo("client.example")
                    client.mail("client@firm.ru")
                    client.rcpt("info@sis.ru")
                    code, _ = client.data(build_mail(message_id=f"<full-{n}@firm.ru>"))
                assert code == 451
    finally:
        spool.tmp.unlink()
        spool.tmp.mkdir()
    failures = [r for r in caplog.records if "spool write failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is None


# --- accept() out of descriptors: one line per window, and the listener recovers ---

ACCEPT_LOG_WINDOW = 1.0
EXHAUST_SCRIPT = textwrap.dedent(
    """\
    import logging, os, resource, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from maild.clock import FixedClock
    from maild.config import SmtpInboundConfig
    from maild.limits import DescriptorReserve
    from maild.sources.smtp import SpoolHandler, make_controller
    from storage.spool import Spool

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    spool = Spool(Path(sys.argv[2]))
    spool.ensure()
    config = SmtpInboundConfig("127.0.0.1", int(sys.argv[1]), False, 1 << 20, hostname="mx.test")
    clock = FixedClock(datetime(2026, 3, 3, tzinfo=UTC))
    handler = SpoolHandler(spool, frozenset({"info@sis.ru"}), lambda: None, clock,
                           max_recipients=10)
    controller = make_controller(config, handler, log_window_seconds=float(sys.argv[3]),
                                 descriptors=DescriptorReserve(reserve=0))
    controller.start()
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print("full", flush=True)
    sys.stdin.readline()
    for fd in held:
        os.close(fd)
    print("freed", flush=True)
    sys.stdin.readline()
    controller.stop()
    """
)


def test_accept_out_of_descriptors_logs_one_line_per_window_and_recovers(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", EXHAUST_SCRIPT, str(port), str(tmp_path / "spool"),
         str(ACCEPT_LOG_WINDOW)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        assert process.stdout.readline() == b"full\n"
        storm_started = time.monotonic()
        waiting: list[socket.socket] = []
        deadline = time.monotonic() + 3.5  # about three windows of failed accepts
        while time.monotonic() < deadline:
            with suppress(OSError):  # the backlog is full: clients wait, as they should
                waiting.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
            time.sleep(0.05)
        assert waiting, "no connection reached the backlog"
        process.stdin.write(b"go on\n")
        process.stdin.flush()
        assert process.stdout.readline() == b"freed\n"
        storm_seconds = time.monotonic() - storm_started
        # asyncio tries accept() again a second later: the waiting clients get an answer,
        # and new ones are greeted.
        waiting[0].settimeout(REPLY_TIMEOUT)
        assert read_line(waiting[0]).startswith((b"220 mx.test ", b"421 4.3.2 mx.test "))
        for sock in waiting:
            sock.close()

        def greeted() -> bool:
            sock, greeting = open_session(port)
            sock.close()
            return greeting.startswith(b"220 mx.test ")

        wait_for(greeted, timeout=10, what="a greeting after the descriptors came back")
        process.stdin.write(b"stop\n")
        process.stdin.flush()
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = stderr.decode(errors="replace").splitlines()
    accept_lines = [line for line in log if "out of system resource" in line]
    assert "Traceback" not in stderr.decode(errors="replace")
    # Unthrottled, asyncio logs a traceback for each of ~100 failed accepts a second.
    assert 1 <= len(accept_lines) <= storm_seconds / ACCEPT_LOG_WINDOW + 3, log
    assert any("more like it since the previous line" in line for line in accept_lines), log
    assert all(line.startswith("WARNING maild.sources.smtp: listener: ") for line in accept_lines)
    assert len(log) < 30, log


# --- the real daemon: the worker keeps working while the listener is full ---


def inbound_rows(db_url: str, message_id: str) -> list[InboundMessage]:
    engine = create_engine(db_url)
    try:
        with Session(engine) as session:
            return list(
                session.scalars(
                    select(InboundMessage)
                    .where(InboundMessage.message_id == message_id)
                    .order_by(InboundMessage.id)
                )
            )
    finally:
        engine.dispose()


def send(port: int, raw: bytes, source: str = "127.0.0.1") -> tuple[int, bytes]:
    with smtplib.SMTP(
        "127.0.0.1", port, timeout=REPLY_TIMEOUT, source_address=(source, 0)
    ) as client:
        client.ehlo("client.example")
        client.mail("client@firm.ru")
        client.rcpt("info@sis.ru")
        return client.data(raw)


def sent_after_refusals(port: int, raw: bytes) -> bool:
    """Send once the listener is up and sessions are counted out; a 421 or a refused
    connection meanwhile just means "not yet"."""
    try:
        return send(port, raw)[0] == 250
    except OSError:  # smtplib's errors included
        return False


def ticketed(db_url: str, message_id: str) -> InboundMessage | None:
    rows = inbound_rows(db_url, message_id)
    return rows[0] if rows and rows[0].ticket_id is not None else None


@pytest.fixture(scope="module")
def capped_daemon(tmp_path_factory):
    folder = tmp_path_factory.mktemp("capped")
    db_url = f"sqlite:///{folder / 'maild.db'}"
    port = free_port()
    limits = "max_sessions = 5\nmax_sessions_per_peer = 3\n"
    config = write_config(folder, db_url, limits, smtp_port=port, engineers=False)
    with running_daemon(config, folder / "maild.log", port):
        yield port, db_url


def test_over_the_caps_a_client_is_still_served_and_its_mail_becomes_a_ticket(capped_daemon):
    port, db_url = capped_daemon
    peer_a = [open_session(port, "127.0.0.2") for _ in range(3)]
    peer_b = [open_session(port, "127.0.0.3") for _ in range(2)]
    try:
        assert all(greeting.startswith(b"220 ") for _, greeting in peer_a + peer_b)
        sock, refused = open_session(port, "127.0.0.2")
        sock.close()
        assert refused.startswith(b"421 4.7.0 ")
        assert b"too many connections from your address" in refused
        with pytest.raises(smtplib.SMTPConnectError) as refusal:
            send(port, build_mail(message_id="<refused@firm.ru>"))
        assert refusal.value.smtp_code == 421

        for sock, _ in peer_b:  # two sessions end; three stay open while a client sends
            sock.close()
        raw = build_mail(message_id="<served@firm.ru>")
        wait_for(lambda: sent_after_refusals(port, raw), timeout=10, what="a client served")
        row = wait_for(lambda: ticketed(db_url, "served@firm.ru"), timeout=20, what="the ticket")
    finally:
        for sock, _ in peer_a + peer_b:
            sock.close()
    assert row.state == "new_ticket"
    assert inbound_rows(db_url, "refused@firm.ru") == []


def test_the_same_raw_sent_twice_over_smtp_is_one_ticket(capped_daemon):
    port, db_url = capped_daemon
    raw = build_mail(message_id="<twice@firm.ru>", subject="Дважды")
    assert send(port, raw)[0] == 250
    assert send(port, raw)[0] == 250  # another session: another Received line on top

    def both_settled():
        rows = inbound_rows(db_url, "twice@firm.ru")
        return rows if len(rows) == 2 and all(r.ticket_id for r in rows) else None

    first, second = wait_for(both_settled, timeout=20, what="both copies settled")
    assert (first.state, second.state) == ("new_ticket", "duplicate")
    assert second.ticket_id == first.ticket_id
    assert first.raw_sha256 != second.raw_sha256  # the trace lines differ; the message does not
    assert first.dedup_key == second.dedup_key


# --- the real daemon under a low file limit ---

FILE_LIMIT = 192


def test_under_a_low_file_limit_sessions_are_refused_before_the_worker_starves(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'maild.db'}"
    port = free_port()
    limits = "max_sessions = 1000\nmax_sessions_per_peer = 1000\n"
    config = write_config(tmp_path, db_url, limits, smtp_port=port, engineers=False)
    maild = [sys.executable, "-m", "maild", "--config", str(config)]
    subprocess.run([*maild, "init"], check=True, capture_output=True)
    log_path = tmp_path / "maild.log"

    def low_file_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))

    attack: list[socket.socket] = []
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*maild, "run"], stdout=log, stderr=subprocess.STDOUT, preexec_fn=low_file_limit
        )
        try:
            wait_for(lambda: sent_after_refusals(port, build_mail(message_id="<up@firm.ru>")),
                     timeout=20, what="the daemon up")  # fmt: skip
            admitted = refused = 0
            while refused < 30:  # keep knocking after the first refusal: the log stays short
                assert admitted < FILE_LIMIT, "no session was ever refused"
                sock, greeting = open_session(port, "127.0.0.2")
                if greeting.startswith(b"220 "):
                    attack.append(sock)
                    admitted += 1
                else:
                    sock.close()
                    assert greeting.startswith(b"421 4.3.2 "), greeting
                    refused += 1
            assert 20 < admitted < FILE_LIMIT - 64

            # The listener is full, yet the worker has its descriptors: mail that reaches
            # the spool another way (IMAP, files) still becomes a ticket.
            spool = Spool(tmp_path / "spool")
            spool.put(
                build_mail(message_id="<by-imap@firm.ru>"),
                SpoolMeta(source="test", received_at=NOW.isoformat(), envelope_from="a@firm.ru"),
            )
            wait_for(lambda: ticketed(db_url, "by-imap@firm.ru"), timeout=20, what="worker")

            # Ten attackers give up: a client is served and its mail becomes a ticket.
            for sock in attack[-10:]:
                sock.close()
            raw = build_mail(message_id="<client@firm.ru>")
            wait_for(lambda: sent_after_refusals(port, raw), timeout=10, what="a client served")
            wait_for(lambda: ticketed(db_url, "client@firm.ru"), timeout=20, what="its ticket")
        finally:
            process.send_signal(signal.SIGTERM)  # with the attack still holding its sessions
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            for sock in attack:
                sock.close()
    text = log_path.read_text(errors="replace")
    assert code == 0, text
    assert "Traceback" not in text
    assert "Too many open files" not in text
    assert len(text.splitlines()) < 50, text
    assert "refusing sessions with 421 (file_descriptors_low)" in text
