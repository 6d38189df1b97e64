"""Reply stripping: the share of replies whose new text is kept exactly right.

    python bench/reply_stripping.py                 # maild, per language, client and kind
    python bench/reply_stripping.py --compare       # and the libraries measured against it
    python bench/reply_stripping.py --failures      # print every case maild gets wrong
    python bench/reply_stripping.py --json

Two tables: tests/fixtures/replies (the suite's, 10 languages, which maild was tuned on) and
bench/data/replies_holdout.toml (written independently of the code by a helper who never saw
maild's rules, and never tuned against: the honest figure). `--compare` runs
mail-parser-reply, quotequail and email-reply-parser when they are installed
(`pip install mail-parser-reply quotequail email-reply-parser`); each gets the case's
language where it takes one. Speed: cases per second of `split_reply`, median of 5 runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from parsers.quotes import split_reply  # noqa: E402
from tests.reply_table import (  # noqa: E402
    SIGNATURE_KINDS,
    ReplyCase,
    kept_right,
    load_cases,
    load_file,
    normalise,
)

HOLDOUT = ROOT / "bench" / "data" / "replies_holdout.toml"
Stripper = Callable[[ReplyCase], str]


def maild(case: ReplyCase) -> str:
    return split_reply(case.body).new_text


def _mail_parser_reply() -> Stripper | None:
    try:
        from mailparser_reply import EmailReplyParser
    except ImportError:
        return None
    known = {"en", "de", "fr", "es", "it", "nl", "pl", "pt", "ru", "uk", "cs", "da", "sv"}

    def strip(case: ReplyCase) -> str:
        languages = list(dict.fromkeys([case.language, "en"] if case.language in known else ["en"]))
        return EmailReplyParser(languages=languages).parse_reply(text=case.body) or ""

    return strip


def _quotequail() -> Stripper | None:
    try:
        import quotequail
    except ImportError:
        return None

    def strip(case: ReplyCase) -> str:
        unwrapped = quotequail.unwrap(case.body)
        if unwrapped and "text_top" in unwrapped:
            return unwrapped["text_top"]
        return "\n".join(text for keep, text in quotequail.quote(case.body) if keep)

    return strip


def _email_reply_parser() -> Stripper | None:
    try:
        from email_reply_parser import EmailReplyParser
    except ImportError:
        return None
    return lambda case: EmailReplyParser.parse_reply(case.body)


def score(strip: Stripper, cases: list[ReplyCase]) -> dict[str, dict[str, list[int]]]:
    """{grouping: {value: [right, total]}} for language, client, kind and 'signature'."""
    table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for case in cases:
        try:
            right = kept_right(strip(case), case)
        except Exception:  # noqa: BLE001 - a library that raises on a case gets it wrong
            right = False
        groups = {"all": "all", "language": case.language, "client": case.client}
        groups["kind"] = case.kind
        groups["signature cases"] = "yes" if case.kind in SIGNATURE_KINDS else "no"
        for grouping, value in groups.items():
            table[grouping][value][0] += right
            table[grouping][value][1] += 1
    return table


def speed(cases: list[ReplyCase]) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for case in cases:
            split_reply(case.body)
        runs.append(len(cases) / (time.perf_counter() - started))
    return statistics.median(runs)


def share(pair: list[int]) -> str:
    return f"{pair[0]}/{pair[1]} ({100 * pair[0] / pair[1]:.1f}%)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--failures", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tables = {"suite table": load_cases()}
    if HOLDOUT.exists():
        tables["holdout"] = load_file(HOLDOUT)
    strippers: dict[str, Stripper | None] = {"maild": maild}
    if args.compare:
        strippers["mail-parser-reply"] = _mail_parser_reply()
        strippers["quotequail"] = _quotequail()
        strippers["email-reply-parser"] = _email_reply_parser()
    results = {
        name: {table: score(strip, cases) for table, cases in tables.items()}
        for name, strip in strippers.items()
        if strip is not None
    }
    rate = speed(tables["suite table"])
    if args.json:
        print(json.dumps({"results": results, "maild_cases_per_second": rate}, indent=1))
        return
    report(tables, results, rate)
    missing = [name for name, strip in strippers.items() if strip is None]
    if missing:
        print(f"not installed, not measured: {', '.join(missing)}")
    if args.failures:
        print_failures(tables)


def report(tables: dict[str, list[ReplyCase]], results: dict, rate: float) -> None:
    for table, cases in tables.items():
        print(f"\n== {table}: {len(cases)} cases")
        for name, by_table in results.items():
            print(f"{name:20} {share(by_table[table]['all']['all'])}")
        for grouping in ("language", "client", "kind", "signature cases"):
            print(f"  maild by {grouping}:")
            for value, pair in sorted(results["maild"][table][grouping].items()):
                print(f"    {value:22} {share(pair)}")
    print(f"\nmaild split_reply: {rate:,.0f} cases/s (median of 5)")


def print_failures(tables: dict[str, list[ReplyCase]]) -> None:
    for table, cases in tables.items():
        for case in cases:
            found = maild(case)
            if not kept_right(found, case):
                print(f"\n--- {table} {case.id} [{case.kind}] {case.note}")
                print(f"expected:\n{normalise(case.new_text)}\nmaild:\n{normalise(found)}")


if __name__ == "__main__":
    main()
