"""Parse throughput: maild's `parse_message` against bare `email.message_from_bytes`.

    python bench/parse.py                          # the bench corpus (generated) + ../shared/corpus
    python bench/parse.py --repeat 7

Same bytes, same process, everything in memory, no database: what parsing alone costs.
`parse_message` does more than the bare call (charset recovery, header decoding, HTML to text,
reply stripping, attachment decoding, hashing and classification, archive listing), so the
ratio says what that work costs on top of the stdlib tokenizer. Attachments go to a sink that
hashes and keeps them in memory (tests/sinks.py); bench/ingest.py measures the encrypted store.
Medians of --repeat passes.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ingest import generate_corpus  # noqa: E402

from parsers.message import parse_message  # noqa: E402
from tests.sinks import MemorySink  # noqa: E402


def load(folder: Path) -> list[bytes]:
    return [
        p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".json"
    ]


def timed(messages: list[bytes], parse: Callable[[bytes], object], repeat: int) -> float:
    """Median messages per second over `repeat` passes."""
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        for raw in messages:
            parse(raw)
        rates.append(len(messages) / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    corpora: dict[str, list[bytes]] = {}
    generated = ROOT / "bench" / "out" / "corpus"
    if not generated.is_dir() or len(list(generated.glob("*.eml"))) < args.messages:
        generate_corpus(generated, args.messages, seed=20261125)
    corpora["bench corpus"] = load(generated)[: args.messages]
    shared = ROOT.parent / "shared" / "corpus"
    if shared.is_dir():
        corpora["shared corpus"] = load(shared)
    header = f"{'corpus':<16}{'msgs':>6}{'MB':>7}{'bare compat32':>15}{'bare default':>14}"
    print(header + f"{'maild':>9}{'maild/compat32':>16}{'maild/default':>15}")
    for name, messages in corpora.items():
        megabytes = sum(map(len, messages)) / 1e6
        bare = timed(messages, email.message_from_bytes, args.repeat)
        default = timed(
            messages,
            lambda raw: email.message_from_bytes(raw, policy=email.policy.default),
            args.repeat,
        )
        ours = timed(
            messages,
            lambda raw: parse_message(raw, MemorySink(), max_attachment_bytes=2**30),
            args.repeat,
        )
        print(
            f"{name:<16}{len(messages):>6}{megabytes:>7.1f}{bare:>15.0f}{default:>14.0f}"
            f"{ours:>9.0f}{ours / bare:>16.2f}{ours / default:>15.2f}"
        )
    print("figures are messages/s, medians of", args.repeat, "passes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
