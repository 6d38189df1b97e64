"""SMTP (and LMTP) intake with aiosmtpd: `250` only once the message is durable in the spool.

The protocol engine is aiosmtpd's. This module adds the handler (RCPT checks, the trace header,
the spool write) and, around aiosmtpd's per-connection `SMTP`, the listener limits (issue 13):
sessions in all and per peer address, descriptors kept in reserve for the spool worker, the idle
timeout, RCPT per transaction, and one log line, not a traceback storm, when accept() runs out
of descriptors. The decisions themselves live in `maild.limits`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError

from maild.clock import Clock
from maild.config import SmtpInboundConfig
from maild.limits import DescriptorReserve, LogThrottle, Refusal, SessionGate
from storage.spool import SpoolMeta, SpoolWriter

log = logging.getLogger(__name__)

OK_QUEUED = "250 2.0.0 Ok: queued as {spool_id}"
OK_RECIPIENT = "250 2.1.5 Ok"
REFUSED_RECIPIENT = "550 5.1.1 <{address}>: recipient is not served here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
"""RFC 5321 4.5.3.1.10: the client sends the rest in another transaction."""
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, message not stored: please retry"
SESSION_REFUSED: dict[Refusal, str] = {
    Refusal.TOO_MANY_SESSIONS: "421 4.7.0 {hostname} too many connections, try again later",
    Refusal.TOO_MANY_FROM_PEER: (
        "421 4.7.0 {hostname} too many connections from your address, try again later"
    ),
    Refusal.DESCRIPTORS_LOW: "421 4.3.2 {hostname} out of resources, try again later",
}
LOG_WINDOW_SECONDS = 60.0
"""At most one line per window for failures an attacker can repeat at will."""
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""What asyncio's accept loop reports (and retries a second later) when it runs out."""

Protocol = Literal["SMTP", "ESMTP", "LMTP"]
TRACE_WIDTH = 78
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9.:_\[\]-]")
_NOT_IN_ADDRESS = re.compile(r"[^!-~]|[<>();\\]")
_MAX_NAME = 253


def is_served_address(address: str, served: frozenset[str]) -> bool:
    """info@sis.ru and its plus-addresses (info+comment@sis.ru) are ours; nothing else is,
    and no address with a control character or space (a quoted local part can carry a CR)."""
    if _CONTROLS.search(address) or any(char.isspace() for char in address):
        return False
    local, _, domain = address.lower().partition("@")
    return address.lower() in served or f"{local.partition('+')[0]}@{domain}" in served


def peer_address(peername: object) -> str:
    """The peer's IP address as text ("" when the socket could not say, as in `SpoolMeta`);
    an IPv4 address mapped into IPv6 is given as IPv4, so that it is the same peer (for the
    caps and for `[security] mx_peers`)."""
    host = peername[0] if isinstance(peername, tuple) and peername else peername
    if not isinstance(host, str) or not host:
        return ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _address_literal(peer: str) -> str:
    """RFC 5321 4.1.3: `[192.0.2.1]` or `[IPv6:2001:db8::1]`."""
    try:
        address = ipaddress.ip_address(peer_address((peer,)))
    except ValueError:
        return "unknown"
    return f"[{address}]" if address.version == 4 else f"[IPv6:{address}]"


def _name_token(text: str) -> str:
    """A HELO name (hostile input) or host name as one visible token: controls, line breaks
    and anything a domain or address literal has no use for are dropped or become `?`."""
    visible = _NOT_IN_NAME.sub("?", _CONTROLS.sub("", text))[:_MAX_NAME]
    return visible or "unknown"


def trace_header(
    *,
    helo: str,
    peer: str,
    hostname: str,
    protocol: Protocol,
    trace_id: str,
    recipients: Sequence[str],
    when: datetime,
) -> bytes:
    """The `Received:` line (RFC 5321 4.4) maild puts on top of every message it accepts,
    folded at 78 columns, ending in CRLF. `for` only names a single recipient: a list of them
    would tell each recipient who else got the message."""
    clauses = [
        f"from {_name_token(helo)} ({_address_literal(peer)})",
        f"by {_name_token(hostname)} (maild)",
        f"with {protocol}",
        f"id {_name_token(trace_id)}",
    ]
    if len(recipients) == 1:
        clauses.append(f"for <{_NOT_IN_ADDRESS.sub('?', _CONTROLS.sub('', recipients[0]))}>")
    clauses[-1] += ";"
    clauses.append(format_datetime(when))
    return _fold("Received:", clauses).encode("ascii", "replace")


def _fold(name: str, clauses: Sequence[str], width: int = TRACE_WIDTH) -> str:
    """Greedy folding (RFC 5322 2.2.3): a clause goes on the line where it fits, else on a
    line of its own; one too long for that (or the first) is placed word by word."""
    lines = [name]
    for clause in clauses:
        if len(lines[-1]) + 1 + len(clause) <= width:
            lines[-1] += " " + clause
        elif lines[-1] != name and len(clause) < width:
            lines.append("\t" + clause)
        else:
            for word in clause.split(" "):
                if len(lines[-1]) + 1 + len(word) <= width:
                    lines[-1] += " " + word
                else:
                    lines.append("\t" + word)
    return "\r\n".join(lines) + "\r\n"


class SpoolHandler:
    """aiosmtpd handler: RCPT checks the address, DATA stamps a `Received:` line, spools the
    bytes and then says 250. One per listener: each has its own recipient cap."""

    def __init__(
        self,
        spool: SpoolWriter,
        served: frozenset[str],
        on_spooled: Callable[[], None],
        clock: Clock,
        *,
        max_recipients: int,
        log_window_seconds: float = LOG_WINDOW_SECONDS,
    ) -> None:
        self.spool = spool
        self.served = served
        self.on_spooled = on_spooled
        self.clock = clock
        self.max_recipients = max_recipients
        self.failures = LogThrottle(log, log_window_seconds)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        del server, session, rcpt_options
        if not is_served_address(address, self.served):
            return REFUSED_RECIPIENT.format(address=address)
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        return OK_RECIPIENT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        is_lmtp = isinstance(server, LMTP)
        now = self.clock.now()
        peer = peer_address(session.peer)
        trace_id = secrets.token_hex(6)
        stamp = trace_header(
            helo=session.host_name or "", peer=peer, hostname=server.hostname,
            protocol="LMTP" if is_lmtp else "ESMTP" if session.extended_smtp else "SMTP",
            trace_id=trace_id, recipients=envelope.rcpt_tos, when=now,
        )  # fmt: skip
        meta = SpoolMeta(
            source="lmtp" if is_lmtp else "smtp",
            received_at=now.isoformat(),
            envelope_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            peer=peer,
        )
        raw = stamp + (envelope.original_content or b"")
        try:
            spool_id = await asyncio.get_running_loop().run_in_executor(
                None, self.spool.put, raw, meta
            )
        except OSError as error:
            # A full disk under a flood fails every message alike: no traceback per message.
            self.failures.log(
                logging.ERROR, "spool write failed, answering 451: %s", error.strerror or error
            )
            return TEMPORARY_FAILURE
        except SQLAlchemyError as error:
            # The shared spool (PostgreSQL) is away: the client keeps the message and retries.
            self.failures.log(
                logging.ERROR, "spool database unavailable, answering 451: %s",
                type(error).__name__,
            )  # fmt: skip
            return TEMPORARY_FAILURE
        self.on_spooled()
        log.debug("spooled %s (Received id %s) from %s", spool_id, trace_id, peer)
        if is_lmtp:
            # LMTP answers once per recipient; all of them share the one durable copy.
            return "\r\n".join(OK_QUEUED.format(spool_id=spool_id) for _ in envelope.rcpt_tos)
        return OK_QUEUED.format(spool_id=spool_id)


class GatedSMTP(SMTP):
    """aiosmtpd's per-connection SMTP, behind the listener's `SessionGate`: a session over a
    cap is answered 421 and closed before any dialogue; an admitted one is counted out when
    its connection is lost, however it ends (QUIT, idle timeout, reset)."""

    def __init__(
        self, handler: SpoolHandler, *, gate: SessionGate, refusals: LogThrottle, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.gate = gate
        self.refusals = refusals
        self.counted_peer: str | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None and not self.refused:  # the connection, not a TLS upgrade
            peer = peer_address(transport.get_extra_info("peername"))
            refusal = self.gate.admit(peer)
            if refusal is not None:
                self.refused = True
                self.refusals.log(
                    logging.WARNING, "refusing sessions with 421 (%s), the last from %s",
                    refusal.value, peer or "unknown",
                )  # fmt: skip
                reply = SESSION_REFUSED[refusal].format(hostname=self.hostname)
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write(reply.encode("ascii") + b"\r\n")
                transport.close()  # after the reply is flushed
                return
            self.counted_peer = peer
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return  # aiosmtpd never saw this connection
        if self.counted_peer is not None:
            self.gate.release(self.counted_peer)
            self.counted_peer = None
        super().connection_lost(error)


class GatedLMTP(GatedSMTP, LMTP):
    """The same gate in front of aiosmtpd's LMTP (LHLO, one reply per recipient)."""


class AcceptErrorLog:
    """The listener loop's exception handler. When accept() runs out of descriptors asyncio
    reports it (with a traceback) up to a hundred times a second; this makes it one WARNING
    line per window with a count, and passes anything else to asyncio's default handler."""

    def __init__(self, throttle: LogThrottle) -> None:
        self.throttle = throttle

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in RESOURCE_ERRNOS:
            self.throttle.log(
                logging.WARNING, "listener: %s (%s); new connections wait in the backlog",
                context.get("message", "out of resources"), error.strerror,
            )  # fmt: skip
            return
        loop.default_exception_handler(context)


class SmtpController(Controller):
    """One listener: aiosmtpd's threaded controller with the gate, the idle timeout, the
    configured host name in the greeting, and the quiet accept-error log."""

    session_class: type[GatedSMTP] = GatedSMTP

    def __init__(
        self,
        handler: SpoolHandler,
        listener: SmtpInboundConfig,
        *,
        log_window_seconds: float = LOG_WINDOW_SECONDS,
        descriptors: DescriptorReserve | None = None,
    ) -> None:
        super().__init__(
            handler, hostname=listener.host, port=listener.port,
            server_hostname=listener.hostname, ident="maild",
            data_size_limit=listener.max_message_bytes, enable_SMTPUTF8=True,
            decode_data=False, timeout=listener.idle_timeout_seconds,
        )  # fmt: skip
        self.listener = listener
        self.gate = SessionGate(listener.max_sessions, listener.max_sessions_per_peer, descriptors)
        self.refusals = LogThrottle(log, log_window_seconds)
        self.loop.set_exception_handler(AcceptErrorLog(LogThrottle(log, log_window_seconds)))

    def factory(self) -> GatedSMTP:
        return self.session_class(
            self.handler, gate=self.gate, refusals=self.refusals, **self.SMTP_kwargs
        )


class LmtpController(SmtpController):
    session_class = GatedLMTP


def make_controller(
    listener: SmtpInboundConfig,
    handler: SpoolHandler,
    *,
    log_window_seconds: float = LOG_WINDOW_SECONDS,
    descriptors: DescriptorReserve | None = None,
) -> SmtpController:
    controller_class = LmtpController if listener.lmtp else SmtpController
    return controller_class(
        handler, listener, log_window_seconds=log_window_seconds, descriptors=descriptors
    )
