"""Look-alike domains are named in security events (pure)."""

from __future__ import annotations

import pytest

from threading_rules.lookalike import find_imitated, is_lookalike, to_unicode

CYRILLIC_A = "stroymont\u0430zh.ru"  # the second "a" is Cyrillic


@pytest.mark.parametrize(
    ("candidate", "genuine", "expected"),
    [
        (CYRILLIC_A, "stroymontazh.ru", True),
        (CYRILLIC_A.encode("idna").decode(), "stroymontazh.ru", True),
        ("stroymontazh-ru.com", "stroymontazh.ru", True),
        ("stroymontazh.ru.evil-mail.example", "stroymontazh.ru", True),
        ("stroymontaz.ru", "stroymontazh.ru", True),
        ("stroymnotazh.ru", "stroymontazh.ru", True),
        ("str0ymontazh.ru", "stroymontazh.ru", True),
        ("flrm.ru", "firm.ru", True),
        ("sis-ru.com", "sis.ru", True),
        ("info-sis.ru", "sis.ru", True),
        ("s1s.ru", "sis.ru", True),
        ("stroymontazh.ru", "stroymontazh.ru", False),
        ("msk.stroymontazh.ru", "stroymontazh.ru", False),
        ("mail.ru", "stroymontazh.ru", False),
        ("gmail.com", "mail.ru", False),
        ("basisrus.com", "sis.ru", False),
        ("teplo-set.ru", "stroymontazh.ru", False),
        ("", "sis.ru", False),
    ],
)
def test_is_lookalike(candidate, genuine, expected):
    assert is_lookalike(candidate, genuine) is expected


def test_punycode_is_compared_as_shown():
    assert to_unicode(CYRILLIC_A.encode("idna").decode()) == CYRILLIC_A


def test_find_imitated_names_the_genuine_domain():
    assert find_imitated("stroymontazh-ru.com", ("mail.ru", "stroymontazh.ru")) == (
        "stroymontazh.ru"
    )
    assert find_imitated("teplo-set.ru", ("mail.ru", "stroymontazh.ru")) is None


def test_broken_punycode_does_not_raise():
    assert is_lookalike("xn--zz-broken.ru", "sis.ru") is False
