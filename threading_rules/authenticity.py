"""Is a message that says it is from an engineer really from that engineer?

A From header is free text anyone can write. An engineer is believed only when
- our own MX (a configured trusted `authserv-id`) says in `Authentication-Results` (RFC 8601)
  that a DKIM signature of the sender's domain verified, or
- the message came to maild's SMTP/LMTP listener straight from a configured trusted relay
  (a host that only carries the company's own outgoing mail).

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

import authres

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


def is_aligned(signing_domain: str, sender_domain: str) -> bool:
    """DMARC's relaxed alignment: the signer is the sender's domain or a parent of it."""
    if not signing_domain:
        return False
    return sender_domain == signing_domain or sender_domain.endswith("." + signing_domain)


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


def identify_author(
    sender: str,
    headers: Sequence[tuple[str, str]],
    *,
    peer: str,
    engineers: frozenset[str],
    trusted_authserv_ids: Sequence[str],
    trusted_networks: Sequence[Network],
) -> AuthorIdentity:
    """Client, proven engineer, or someone using an engineer's address without proof."""
    if sender not in engineers:
        return AuthorIdentity(AuthorKind.CLIENT, "not_engineer", f"{sender} is not an engineer")
    if peer and is_trusted_peer(peer, trusted_networks):
        return AuthorIdentity(
            AuthorKind.ENGINEER, "trusted_relay", f"{sender} sent through trusted relay {peer}"
        )
    domain = sender.rpartition("@")[2]
    results, ignored = parse_trusted_dkim(headers, trusted_authserv_ids)
    for result in results:
        if result.result == "pass" and is_aligned(result.domain, domain):
            return AuthorIdentity(
                AuthorKind.ENGINEER, "dkim_pass",
                f"{sender}: DKIM pass for {result.domain} according to {result.authserv_id}",
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
