"""Engineer identity: only our MX's DKIM verdict or a trusted relay proves it (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from threading_rules.authenticity import (
    AuthorKind,
    identify_author,
    is_aligned,
    parse_networks,
    parse_trusted_dkim,
)

ENGINEERS = frozenset({"ivanov@sis.ru"})
TRUSTED = ("mx.sis.ru",)
RELAYS = parse_networks(["10.10.0.0/16", "mail-out.sis.ru"])
RECEIVED_BY_MX = ("received", "from vps.example (vps.example [203.0.113.9]) by mx.sis.ru")
RECEIVED_OUTSIDE = ("received", "from [192.168.1.5] by vps.example")


def ar(value: str) -> tuple[str, str]:
    return ("authentication-results", value)


def author(headers, sender="ivanov@sis.ru", peer=""):
    return identify_author(
        sender,
        headers,
        peer=peer,
        engineers=ENGINEERS,
        trusted_authserv_ids=TRUSTED,
        trusted_networks=RELAYS,
    )


CASES = [
    (
        "DKIM pass from our MX, above its Received",
        [ar("mx.sis.ru; dkim=pass header.d=sis.ru header.i=@sis.ru"), RECEIVED_BY_MX],
        "",
        AuthorKind.ENGINEER,
        "dkim_pass",
    ),
    (
        "DKIM pass from our MX, below its Received line",
        [RECEIVED_BY_MX, ar("mx.sis.ru; dkim=pass header.d=sis.ru"), RECEIVED_OUTSIDE],
        "",
        AuthorKind.ENGINEER,
        "dkim_pass",
    ),
    (
        "authserv-id is case-insensitive, with comments and a version",
        [ar("MX.SIS.RU 1 (Postfix); dkim=pass (2048-bit key) header.d=SIS.RU")],
        "",
        AuthorKind.ENGINEER,
        "dkim_pass",
    ),
    (
        "header.i alone names the signer",
        [ar("mx.sis.ru; dkim=pass header.i=@sis.ru")],
        "",
        AuthorKind.ENGINEER,
        "dkim_pass",
    ),
    (
        "a parent-domain signature is aligned",
        [ar("mx.sis.ru; dkim=pass header.d=sis.ru")],
        "",
        AuthorKind.ENGINEER,
        "dkim_pass",
    ),
    (
        "no Authentication-Results at all",
        [RECEIVED_BY_MX],
        "",
        AuthorKind.UNVERIFIED_ENGINEER,
        "no_authentication_results",
    ),
    (
        "forged results from an untrusted authserv-id",
        [RECEIVED_BY_MX, ar("mx.evil.example; dkim=pass header.d=sis.ru")],
        "",
        AuthorKind.UNVERIFIED_ENGINEER,
        "untrusted_authentication_results",
    ),
    (
        "DKIM fail from our MX",
        [ar("mx.sis.ru; dkim=fail header.d=sis.ru; spf=softfail smtp.mailfrom=sis.ru")],
        "",
        AuthorKind.UNVERIFIED_ENGINEER,
        "dkim_not_pass",
    ),
    (
        "DKIM pass for another domain",
        [ar("mx.sis.ru; dkim=pass header.d=evil.example; dmarc=fail header.from=sis.ru")],
        "",
        AuthorKind.UNVERIFIED_ENGINEER,
        "dkim_not_aligned",
    ),
    (
        "SPF and DMARC pass are not DKIM",
        [ar("mx.sis.ru; spf=pass smtp.mailfrom=sis.ru; dmarc=pass header.from=sis.ru")],
        "",
        AuthorKind.UNVERIFIED_ENGINEER,
        "no_authentication_results",
    ),
    (
        "forged trusted results below our MX's genuine ones",
        [
            ar("mx.sis.ru; dkim=none; spf=fail smtp.mailfrom=sis.ru"),
            RECEIVED_BY_MX,
            RECEIVED_OUTSIDE,
            ar("mx.sis.ru; dkim=pass header.d=sis.ru"),
        ],
        "",
        AuthorKind.UNVERIFIED_ENGINEER,
        "dkim_not_pass",
    ),
    (
        "unparsable results are not believed",
        [ar("mx.sis.ru dkim pass"), RECEIVED_BY_MX],
        "",
        AuthorKind.UNVERIFIED_ENGINEER,
        "untrusted_authentication_results",
    ),
    ("trusted relay by network", [], "10.10.3.4", AuthorKind.ENGINEER, "trusted_relay"),
    (
        "untrusted peer",
        [],
        "203.0.113.9",
        AuthorKind.UNVERIFIED_ENGINEER,
        "no_authentication_results",
    ),
]


@pytest.mark.parametrize(
    ("name", "headers", "peer", "kind", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_identify_author(name, headers, peer, kind, reason):
    identity = author(headers, peer=peer)
    assert (identity.kind, identity.reason) == (kind, reason)
    assert identity.explanation.startswith("ivanov@sis.ru")


def test_a_client_needs_no_proof():
    identity = author([], sender="sidorov@stroymontazh.ru")
    assert (identity.kind, identity.reason) == (AuthorKind.CLIENT, "not_engineer")


def test_a_lookalike_engineer_address_is_a_client():
    assert author([], sender="ivanov@sis-ru.com").kind is AuthorKind.CLIENT


def test_only_the_topmost_trusted_block_counts():
    believed, ignored = parse_trusted_dkim(
        [
            ("delivered-to", "info@sis.ru"),
            ar("mx.sis.ru; dkim=pass header.d=sis.ru"),
            ar("mx.sis.ru; dkim=fail header.d=other.example"),
            RECEIVED_BY_MX,
            ar("mx.sis.ru; dkim=pass header.d=forged.example"),
            ar("relay.example; dkim=pass header.d=sis.ru"),
        ],
        TRUSTED,
    )
    assert [(r.result, r.domain) for r in believed] == [
        ("pass", "sis.ru"),
        ("fail", "other.example"),
    ]
    assert ignored == []


@pytest.mark.parametrize(
    ("signer", "sender_domain", "aligned"),
    [
        ("sis.ru", "sis.ru", True),
        ("sis.ru", "msk.sis.ru", True),
        ("msk.sis.ru", "sis.ru", False),
        ("evilsis.ru", "sis.ru", False),
        ("", "sis.ru", False),
    ],
)
def test_alignment(signer, sender_domain, aligned):
    assert is_aligned(signer, sender_domain) is aligned


def test_relay_host_names_are_not_networks():
    assert [str(n) for n in RELAYS] == ["10.10.0.0/16"]


@given(st.text(max_size=300))
def test_any_header_value_is_survived(value):
    identity = author([ar(value), RECEIVED_BY_MX])
    assert identity.kind in (AuthorKind.ENGINEER, AuthorKind.UNVERIFIED_ENGINEER)
