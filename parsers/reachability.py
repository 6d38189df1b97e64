"""Addresses that mail from outside cannot reach: a request from one is still a request.

Cron jobs and monitoring scripts send as `root@localhost` or `admin@buildserver`; the person
who set them up reads the ticket through an engineer, so maild opens the ticket but sends
nothing to such an address. Mail to it would be delivered by our relay to its own local
`root` (a leak of the ticket to whoever reads that mailbox) or bounce.
"""

from __future__ import annotations

import re

TELEGRAM_DOMAIN = "telegram.invalid"
"""The reserved domain of Telegram chats (`tg<chat id>@telegram.invalid`): `.invalid` never
resolves (RFC 2606), so no relay delivers to it; maild's own bot does (the outbox routes such
recipients to the Bot API), and only the bot writes from it."""
_CHAT_LOCAL = re.compile(r"tg(-?[0-9]{1,20})")

# RFC 2606, RFC 6761 and RFC 6762 names that never reach the public Internet, and the
# suffixes that mail programs and distributions give to hosts without a domain.
_LOCAL_SUFFIXES = (
    "localhost", "localdomain", "local", "invalid", "test", "example", "internal", "lan",
    "home.arpa", "intranet", "corp", "home",
)  # fmt: skip


def chat_address(chat_id: int) -> str:
    return f"tg{chat_id}@{TELEGRAM_DOMAIN}"


def chat_of_address(address: str) -> int | None:
    """The chat a reserved address stands for; None for any other address."""
    local, _, domain = address.lower().partition("@")
    match = _CHAT_LOCAL.fullmatch(local)
    return int(match.group(1)) if domain == TELEGRAM_DOMAIN and match else None


def why_unanswerable(address: str) -> str | None:
    """Why mail to `address` cannot be delivered from outside (a sentence), or None. A
    Telegram chat's address is answered, by the bot."""
    if chat_of_address(address) is not None:
        return None
    _, _, domain = address.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not domain:
        return f"{address} has no domain"
    if domain.startswith("[") or "." not in domain:
        return f"{address} is an address on one host ({domain}), not reachable by mail"
    for suffix in _LOCAL_SUFFIXES:
        if domain == suffix or domain.endswith("." + suffix):
            return f"{address} is in the local-only domain .{suffix} (never on the Internet)"
    return None
