"""Which contract a request is served under, and the SLA terms it promises.

Pure decisions over the config: a client's dedicated channel (its own mailbox or address)
names its contract; else the sender's address, then the sender's mail domain (subdomains
too); else the public offer (`[sla]`). The terms are copied onto the ticket when it opens
(`Ticket.sla_terms`), so a later change of the contract does not move its deadlines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from maild.config import CRITICALITIES, Config, ContractConfig
from storage.repositories import ContractRow

PUBLIC_OFFER = "public_offer"


@dataclass(frozen=True, slots=True)
class ContractChoice:
    contract: ContractConfig | None
    reason: str
    """channel_mailbox, channel_address, contract_address, contract_domain or public_offer."""
    explanation: str


def choose_contract(
    config: Config, *, sender: str, recipients: Iterable[str], source: str
) -> ContractChoice:
    by_name = {contract.name: contract for contract in config.contracts}
    mailbox = _imap_mailbox_name(source)
    for imap in config.imap:
        if imap.name == mailbox and imap.contract:
            why = f"arrived in mailbox {imap.name!r}, the channel of contract {imap.contract!r}"
            return ContractChoice(by_name[imap.contract], "channel_mailbox", why)
    addressed = {address.lower() for address in recipients}
    for channel in config.channels:
        if channel.address in addressed:
            why = f"sent to {channel.address}, the channel of contract {channel.contract!r}"
            return ContractChoice(by_name[channel.contract], "channel_address", why)
    sender = sender.lower()
    for contract in config.contracts:
        if sender in contract.addresses:
            why = f"{sender} is named in contract {contract.name!r}"
            return ContractChoice(contract, "contract_address", why)
    domain = sender.rpartition("@")[2]
    for contract in config.contracts:
        found = next((d for d in contract.domains if domain == d or domain.endswith("." + d)), "")
        if found:
            why = f"the domain {domain} is covered by contract {contract.name!r} ({found})"
            return ContractChoice(contract, "contract_domain", why)
    return ContractChoice(None, PUBLIC_OFFER, f"{sender} is under no contract: the public offer")


def _imap_mailbox_name(source: str) -> str | None:
    """`imap:NAME/FOLDER/UIDVALIDITY/UID` -> NAME."""
    if not source.startswith("imap:"):
        return None
    return source[len("imap:") :].split("/", 1)[0]


def sla_terms(config: Config, contract: ContractConfig | None) -> dict[str, Any]:
    """The ticket's copy of what its contract (or the public offer) promises, in minutes."""
    source = contract or config.sla
    return {
        "mode": source.mode,
        "contract": contract.name if contract else None,
        "first_response_minutes": _minutes(source.first_response_hours),
        "resolution_minutes": _minutes(source.resolution_hours),
    }


def _minutes(hours: Any) -> dict[str, int]:
    return {level: round(float(hours[level]) * 60) for level in CRITICALITIES}


def contract_rows(config: Config) -> list[ContractRow]:
    """The config's contracts as the database mirrors them."""
    return [
        ContractRow(c.name, c.mode, c.domains, c.addresses, sla_terms(config, c))
        for c in config.contracts
    ]


DEDICATED_REASONS = frozenset({"channel_mailbox", "channel_address"})


SOURCE_CHANNELS = {"web": "web", "telegram": "telegram"}
"""Spool sources that are channels of their own (the form's and the bot's listeners)."""


def channel_of(choice: ContractChoice, source: str) -> str:
    """The regulation's channel of a request: the listener it came through when that is a
    channel of its own (`web`, `telegram`: the spool's source, which no mail can forge);
    `dedicated` when it came through a client's own mailbox or address; else `email`."""
    if source in SOURCE_CHANNELS:
        return SOURCE_CHANNELS[source]
    return "dedicated" if choice.reason in DEDICATED_REASONS else "email"
