"""Is a message that says it is from an engineer really from that engineer?

A From header is free text anyone can write. An engineer is believed only when
- our own MX (a configured trusted `authserv-id`) says in `Authentication-Results` (RFC 8601)
  that a DKIM signature of the sender's organisational domain verified, and no DKIM result
  of that domain in the same block failed, or
- the message came to maild's SMTP/LMTP listener straight from a configured trusted relay
  (a host that only carries the company's own outgoing mail).

`Authentication-Results` are read at all only where our MX wrote them: on mail that the
listener took from one of `[security] mx_peers`, or that maild fetched from the IMAP mailbox
the MX fills, or that an admin fed in as files. Any local process can talk to the listener;
what it writes in its headers proves nothing (issue 13).

Alignment stops at the organisational domain (the public suffix list): `header.d=ru` or
`header.d=co.uk` is a public suffix and aligns with nobody.

Only the topmost block of trusted `Authentication-Results` counts: once our MX's header is
read, a trusted-looking header below the next `Received` line was written before our MX saw
the message, and is ignored. That protects only when the MX did add its own header: where it
added none (a milter down) a sender's forgery would be the topmost one. So the MX must delete
forgeries of its own authserv-id (RFC 8601 section 5), as docs/architecture.md tells admins;
this rule is the second line of defence. (A stricter rule, "above the first Received only",
would refuse MTAs such as Exim that append their header at the bottom.)
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import authres
from publicsuffixlist import PublicSuffixList

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AuthorKind(enum.StrEnum):
    CLIENT = "client"
    ENGINEER = "engineer"
    """Proven by trusted DKIM or a trusted relay."""
    UNVERIFIED_ENGINEER = "unverified_engineer"
    """Says it is an engineer and could not prove it: handled as a client, recorded."""


@dataclass(frozen=True, slots=True)
class AuthorIdentity:
    kind: AuthorKind
    reason: str
    explanation: str

    @property
    def is_engineer(self) -> bool:
        return self.kind is AuthorKind.ENGINEER


@dataclass(frozen=True, slots=True)
class DkimResult:
    authserv_id: str
    result: str
    domain: str


def parse_trusted_dkim(
    headers: Sequence[tuple[str, str]], trusted_authserv_ids: Iterable[str]
) -> tuple[list[DkimResult], list[str]]:
    """DKIM results from the topmost trusted Authentication-Results block, and the
    authserv-ids of the headers that were not believed (for the explanation)."""
    trusted = {item.lower() for item in trusted_authserv_ids}
    believed: list[DkimResult] = []
    ignored: list[str] = []
    seen_trusted = False
    for name, value in headers:
        if name == "received" and seen_trusted:
            break  # below our MX's own header: written by someone else
        if name != "authentication-results":
            continue
        try:
            header = authres.AuthenticationResultsHeader.parse_value(value)
        except (authres.AuthResError, ValueError, IndexError, AttributeError):
            ignored.append("unparsable")
            continue
        authserv_id = str(header.authserv_id or "").lower()
        if authserv_id not in trusted:
            ignored.append(authserv_id or "unnamed")
            continue
        seen_trusted = True
        for result in header.results:
            if str(result.method).lower() != "dkim":
                continue
            believed.append(
                DkimResult(authserv_id, str(result.result).lower(), _signing_domain(result))
            )
    return believed, ignored


def _signing_domain(result: authres.AuthenticationResult) -> str:
    """header.d, or the domain of header.i when only the identity is given."""
    identity = ""
    for prop in result.properties:
        if str(prop.type).lower() != "header":
            continue
        name, value = str(prop.name).lower(), str(prop.value).strip().lower()
        if name == "d":
            return value
        if name == "i":
            identity = value.rpartition("@")[2]
    return identity


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str | None:
    """`mail.sis.ru` -> `sis.ru`; None for a public suffix (`ru`, `co.uk`, `msk.ru`)."""
    name = domain.strip().rstrip(".").lower()
    if not name:
        return None
    found: str | None = _suffixes().privatesuffix(name)
    return found


def is_aligned(signing_domain: str, sender_domain: str) -> bool:
    """Relaxed alignment, as the house has it: the signer is the sender's domain or a parent
    of it, down to the organisational domain and never a public suffix (`ru`, `co.uk`)."""
    signer = signing_domain.strip().rstrip(".").lower()
    sender = sender_domain.strip().rstrip(".").lower()
    if not signer or not (sender == signer or sender.endswith("." + signer)):
        return False
    organization = organizational_domain(sender)
    return organization is not None and (
        signer == organization or signer.endswith("." + organization)
    )


def parse_networks(relays: Iterable[str]) -> tuple[Network, ...]:
    """The IP networks among `security.trusted_relays` (host names are matched elsewhere)."""
    networks: list[Network] = []
    for item in relays:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            continue
    return tuple(networks)


def is_trusted_peer(peer: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in networks)


LISTENER_SOURCES = ("smtp", "lmtp")
_FAILED = ("fail", "permerror")


def results_are_ours(source: str, peer: str, mx_networks: Sequence[Network]) -> bool:
    """Were the Authentication-Results of this message written by our MX? Only the
    listener can be reached by anyone; IMAP and an admin's files come from the MX's side."""
    if source not in LISTENER_SOURCES:
        return True
    return bool(peer) and is_trusted_peer(peer, mx_networks)


def identify_author(
    sender: str,
    headers: Sequence[tuple[str, str]],
    *,
    peer: str,
    engineers: frozenset[str],
    trusted_authserv_ids: Sequence[str],
    trusted_networks: Sequence[Network],
    results_trusted: bool = True,
) -> AuthorIdentity:
    """Client, proven engineer, or someone using an engineer's address without proof."""
    if sender not in engineers:
        return AuthorIdentity(AuthorKind.CLIENT, "not_engineer", f"{sender} is not an engineer")
    if peer and is_trusted_peer(peer, trusted_networks):
        return AuthorIdentity(
            AuthorKind.ENGINEER, "trusted_relay", f"{sender} sent through trusted relay {peer}"
        )
    if not results_trusted:
        return AuthorIdentity(
            AuthorKind.UNVERIFIED_ENGINEER, "authentication_results_not_from_mx",
            f"{sender} is an engineer's address but the message reached the listener from "
            f"{peer or 'an unknown peer'}, which is neither a trusted relay nor one of "
            f"[security] mx_peers, so its Authentication-Results prove nothing",
        )  # fmt: skip
    domain = sender.rpartition("@")[2]
    results, ignored = parse_trusted_dkim(headers, trusted_authserv_ids)
    passed = [r for r in results if r.result == "pass" and is_aligned(r.domain, domain)]
    failed = [
        r for r in results if r.result in _FAILED and (not r.domain or is_aligned(r.domain, domain))
    ]
    if passed and failed:
        # Two verdicts in the block our MX is trusted for: one of them is a forgery, and a
        # forger can only add a pass.
        return AuthorIdentity(
            AuthorKind.UNVERIFIED_ENGINEER, "dkim_fail_veto",
            f"{sender} is an engineer's address but {failed[0].authserv_id} reports DKIM "
            f"{failed[0].result} for {failed[0].domain or 'the sender'}; a failure vetoes a pass",
        )  # fmt: skip
    if passed:
        return AuthorIdentity(
            AuthorKind.ENGINEER, "dkim_pass",
            f"{sender}: DKIM pass for {passed[0].domain} according to {passed[0].authserv_id}",
        )  # fmt: skip
    return AuthorIdentity(
        AuthorKind.UNVERIFIED_ENGINEER,
        _failure_reason(results, ignored),
        f"{sender} is an engineer's address but {_failure_detail(results, domain, ignored)}",
    )


def _failure_reason(results: Sequence[DkimResult], ignored: Sequence[str]) -> str:
    if any(r.result == "pass" for r in results):
        return "dkim_not_aligned"
    if results:
        return "dkim_not_pass"
    if ignored:
        return "untrusted_authentication_results"
    return "no_authentication_results"


def _failure_detail(results: Sequence[DkimResult], domain: str, ignored: Sequence[str]) -> str:
    if any(r.result == "pass" for r in results):
        signers = ", ".join(sorted({r.domain or "?" for r in results if r.result == "pass"}))
        return f"DKIM passed only for {signers}, not for {domain}"
    if results:
        outcomes = ", ".join(sorted({r.result for r in results}))
        return f"DKIM result from our MX is {outcomes}"
    if ignored:
        return f"Authentication-Results only from untrusted {', '.join(sorted(set(ignored)))}"
    return "no trusted Authentication-Results and no trusted relay"
