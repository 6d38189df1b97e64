"""SMTP (and LMTP) intake with aiosmtpd: `250` only once the message is durable in the spool.

The protocol engine is aiosmtpd's; this module is only the handler, as aiosmtpd intends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

from storage.spool import Spool, SpoolMeta

log = logging.getLogger(__name__)

OK_QUEUED = "250 2.0.0 Ok: queued as {spool_id}"
OK_RECIPIENT = "250 2.1.5 Ok"
REFUSED_RECIPIENT = "550 5.1.1 <{address}>: recipient is not served here"
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, message not stored: please retry"


def is_served_address(address: str, served: frozenset[str]) -> bool:
    """info@sis.ru and its plus-addresses (info+comment@sis.ru) are ours; nothing else is."""
    local, _, domain = address.lower().partition("@")
    return address.lower() in served or f"{local.partition('+')[0]}@{domain}" in served


class SpoolHandler:
    """aiosmtpd handler: RCPT checks the address, DATA spools the bytes and then says 250."""

    def __init__(
        self, spool: Spool, served: frozenset[str], on_spooled: Callable[[], None]
    ) -> None:
        self.spool = spool
        self.served = served
        self.on_spooled = on_spooled

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        del server, session, rcpt_options
        if not is_served_address(address, self.served):
            return REFUSED_RECIPIENT.format(address=address)
        envelope.rcpt_tos.append(address)
        return OK_RECIPIENT

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        meta = SpoolMeta(
            source="lmtp" if isinstance(server, LMTP) else "smtp",
            received_at=datetime.now(UTC).isoformat(),
            envelope_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            peer=str(session.peer[0]) if session.peer else "",
        )
        try:
            spool_id = await asyncio.get_running_loop().run_in_executor(
                None, self.spool.put, raw, meta
            )
        except OSError as error:
            log.exception("spool write failed, answering 451: %s", error.strerror)
            return TEMPORARY_FAILURE
        self.on_spooled()
        log.debug("spooled %s from %s", spool_id, meta.peer)
        if isinstance(server, LMTP):
            # LMTP answers once per recipient; all of them share the one durable copy.
            return "\r\n".join(OK_QUEUED.format(spool_id=spool_id) for _ in envelope.rcpt_tos)
        return OK_QUEUED.format(spool_id=spool_id)


class LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


def make_controller(
    handler: SpoolHandler, host: str, port: int, *, lmtp: bool, max_message_bytes: int
) -> Controller:
    kwargs: dict[str, Any] = {"data_size_limit": max_message_bytes, "enable_SMTPUTF8": True,
                              "decode_data": False, "ident": "maild"}  # fmt: skip
    controller_class = LmtpController if lmtp else Controller
    return controller_class(handler, hostname=host, port=port, **kwargs)
