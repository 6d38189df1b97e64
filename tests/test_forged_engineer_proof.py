"""Forged engineer proof: Authentication-Results are believed only where our MX wrote them.

The attack (issue 13): any local process could hand maild's listener a message with its own
`Authentication-Results: mx.sis.ru; dkim=pass header.d=sis.ru` on top, and be an engineer;
`header.d=ru` aligned with `sis.ru`; a forged pass beside our MX's fail won.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from maild.worker import drain_spool
from storage.models import Event
from storage.spool import SpoolMeta
from tests.test_spoofing import engineer_reply, security_reasons
from tests.test_spoofing import spool_and_run as spool_one
from threading_rules.authenticity import (
    AuthorKind,
    identify_author,
    is_aligned,
    organizational_domain,
    parse_networks,
    results_are_ours,
)

MX = parse_networks(["192.0.2.25/32", "2001:db8::25"])
MX_VERDICT = "mx.sis.ru; dkim=pass header.d=sis.ru header.s=mail"
TRUST_MX = '[security]\ntrusted_authserv_ids = ["mx.sis.ru"]\nmx_peers = ["192.0.2.25"]\n'


@pytest.mark.parametrize(
    ("source", "peer", "ours"),
    [
        ("smtp", "192.0.2.25", True),  # the MX hands mail to the listener
        ("lmtp", "2001:db8::25", True),
        ("smtp", "127.0.0.1", False),  # any local process
        ("lmtp", "198.51.100.7", False),
        ("smtp", "", False),  # a peer nobody recorded
        ("imap:main/INBOX/1/7", "10.0.0.5", True),  # the mailbox the MX fills
        ("maildir:/srv/mail/info/new/1", "", True),  # an admin's files
    ],
)
def test_whose_authentication_results_are_read(source, peer, ours):
    assert results_are_ours(source, peer, MX) is ours


@pytest.mark.parametrize(
    ("signer", "sender", "aligned"),
    [
        ("ru", "sis.ru", False),  # a public suffix aligns with nobody
        ("msk.ru", "firm.msk.ru", False),  # a regional suffix is still a suffix
        ("co.uk", "firm.co.uk", False),
        ("firm.co.uk", "firm.co.uk", True),
        ("sis.ru", "support.sis.ru", True),
        ("xn--p1ai", "xn--80ak6aa92e.xn--p1ai", False),  # .рф
        ("sis.ru.", "sis.ru", True),
    ],
)
def test_alignment_stops_at_the_organisational_domain(signer, sender, aligned):
    assert is_aligned(signer, sender) is aligned


def test_organisational_domain():
    assert organizational_domain("mail.sis.ru") == "sis.ru"
    assert organizational_domain("ru") is None


def test_a_fail_in_the_trusted_block_vetoes_a_pass():
    headers = [
        ("authentication-results", MX_VERDICT),  # the sender's forgery
        ("authentication-results", "mx.sis.ru; dkim=fail header.d=sis.ru"),  # our MX
        ("received", "from vps.example by mx.sis.ru"),
    ]
    identity = identify_author(
        "ivanov@sis.ru", headers, peer="", engineers=frozenset({"ivanov@sis.ru"}),
        trusted_authserv_ids=("mx.sis.ru",), trusted_networks=(),
    )  # fmt: skip
    assert (identity.kind, identity.reason) == (AuthorKind.UNVERIFIED_ENGINEER, "dkim_fail_veto")


def test_header_d_ru_does_not_make_an_engineer():
    headers = [("authentication-results", "mx.sis.ru; dkim=pass header.d=ru")]
    identity = identify_author(
        "ivanov@sis.ru", headers, peer="", engineers=frozenset({"ivanov@sis.ru"}),
        trusted_authserv_ids=("mx.sis.ru",), trusted_networks=(),
    )  # fmt: skip
    assert (identity.kind, identity.reason) == (AuthorKind.UNVERIFIED_ENGINEER, "dkim_not_aligned")


def author_reasons(app) -> list[str]:
    """Why an engineer's address was not believed, as the security events explain it."""
    with app.sessions() as session:
        details = session.scalars(select(Event.detail).where(Event.kind == "security")).all()
    return [
        "authentication_results_not_from_mx"
        for detail in details
        if "[security] mx_peers" in detail.get("explanation", "")
    ]


def open_ticket(app) -> None:
    client = engineer_reply().replace(b"ivanov@sis.ru", b"sidorov@stroymontazh.ru")
    app.spool.put(client, SpoolMeta(source="smtp", received_at="2026-03-03T09:00:00Z"))
    drain_spool(app.spool, app.pipeline)


def test_a_local_process_cannot_prove_an_engineer_through_the_listener(make_app):
    app = make_app(TRUST_MX)
    open_ticket(app)
    forged = engineer_reply(**{"Authentication-Results": MX_VERDICT})
    row = spool_one(app, forged, source="smtp", peer="127.0.0.1")
    assert row.state == "new_ticket"  # a stranger naming ticket 1 gets a ticket of their own
    assert "authentication_results_not_from_mx" in author_reasons(app)


def test_the_mx_handing_over_proves_the_engineer(make_app):
    app = make_app(TRUST_MX)
    open_ticket(app)
    genuine = engineer_reply(**{"Authentication-Results": MX_VERDICT})
    row = spool_one(app, genuine, source="lmtp", peer="192.0.2.25")
    assert (row.state, row.ticket_id) == ("follow_up", 1)  # the engineer's answer
    assert not author_reasons(app)
    assert "unverified_engineer" not in security_reasons(app)


def test_the_example_config_believes_no_listener_peer():
    """Safe as shipped: the example names our MX's authserv-id but no MX peer, so over the
    listener only a trusted relay proves an engineer, and IMAP works as documented."""
    from maild.config import load_config
    from tests.conftest import ROOT

    config = load_config(ROOT / "etc" / "maild.example.toml")
    networks = parse_networks(config.security.mx_peers)
    assert not results_are_ours("smtp", "127.0.0.1", networks)
    assert not config.security.trusted_relays
