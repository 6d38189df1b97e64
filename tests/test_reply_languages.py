"""Reply stripping in ten languages (issue 14): every case of tests/fixtures/replies.

Each case is the text/plain body a real client writes (Gmail, Outlook desktop and web, Apple
Mail, Thunderbird, Yandex, Mail.ru, The Bat!) with the exact words a support engineer must
see. bench/reply_stripping.py prints the share kept right, per language, client and kind,
next to the libraries it was measured against.
"""

from __future__ import annotations

from collections import Counter

import pytest

from parsers.quotes import split_reply
from tests.reply_table import LANGUAGES, SIGNATURE_KINDS, load_cases, normalise

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_new_text_is_what_the_sender_wrote(case):
    assert normalise(split_reply(case.body).new_text) == normalise(case.new_text), case.note


def test_table_covers_ten_languages_and_the_clients():
    per_language = Counter(case.language for case in CASES)
    assert set(per_language) == set(LANGUAGES)
    assert min(per_language.values()) >= 10
    for language in LANGUAGES:
        clients = {case.client for case in CASES if case.language == language}
        assert len(clients) >= 4, (language, clients)
        signatures = [c for c in CASES if c.language == language and c.kind in SIGNATURE_KINDS]
        assert len(signatures) >= 3, language
    clients = {case.client for case in CASES}
    assert {"gmail", "outlook-desktop", "outlook-web", "apple-mail", "thunderbird"} <= clients
    assert {"yandex", "mailru"} <= clients
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # A sign-off is the message's ("Cheers" is not a signature block), with its name.
        ("Works now, thanks.\n\nCheers,\nJohn", "Works now, thanks.\n\nCheers,\nJohn"),
        ("Läuft wieder.\n\nLG Sabine", "Läuft wieder.\n\nLG Sabine"),
        # A thanks followed by a sentence is a sentence, nothing below it is cut.
        ("Done.\n\nThanks!\nI also saw the report is slow.", "Done.\n\nThanks!\nI also saw the report is slow."),
        # "Sent from my desk, ..." is prose; "Sent from my iPhone" is a footer.
        ("Hi\n\nSent from my desk, easier than my phone.", "Hi\n\nSent from my desk, easier than my phone."),
        # A log pasted under a colon line is the sender's.
        ("Here is the log:\n2025-03-03 10:00 ERROR x\n2025-03-03 10:01 FATAL y", "Here is the log:\n2025-03-03 10:00 ERROR x\n2025-03-03 10:01 FATAL y"),
        # Oracle's prompt repeated in a bug report is not initials quoting.
        ("Fails:\nSQL> select 1 from dual;\nSQL> exit", "Fails:\nSQL> select 1 from dual;\nSQL> exit"),
        # An ASCII table is not "|" quoting.
        ("Counts:\n| host | errors |\n| a | 3 |", "Counts:\n| host | errors |\n| a | 3 |"),
    ],
)  # fmt: skip
def test_traps_keep_the_senders_words(body, expected):
    assert split_reply(body).new_text == expected
