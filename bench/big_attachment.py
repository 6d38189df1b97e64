"""A message with a 1 GB memory dump through `maild ingest`: peak RSS and throughput.

    python bench/big_attachment.py                 # 1 GiB dump, 3 repeats
    python bench/big_attachment.py --mb 200 --repeat 1

The message (Outlook-shaped multipart/mixed: a Russian text part and the dump in base64,
76-character lines) is written part by part to a temporary folder, never held in memory, and
ingested by `maild ingest --json` in its own process; peak RSS comes from that process alone
(see bench/ingest.py's wrapper). The aim is peak RSS under 200 MB whatever the dump's size.
After each run the stored artifact is decrypted with `maild artifacts get` and its sha256
compared with the dump's, so a fast but wrong run cannot pass.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import measure_child

MAILD_CONFIG = """\
[database]
url = "sqlite:///maild.db"
[artifacts]
path = "artifacts"
max_attachment_mb = 4096
max_message_mb = 4096
[spool]
path = "spool"
[outbound]
transport = "maildir:outbox"
[inbound.smtp]
enabled = false
"""
_BLOCK = 57 * 1024 * 16  # whole base64 lines per write


def write_message(path: Path, megabytes: int) -> str:
    """The message file; returns the sha256 of the dump inside it."""
    boundary = "----=_NextPart_000_0042_01DB8C3A.5F2E1B40"
    digest = hashlib.sha256()
    seed = hashlib.sha256(b"maild big attachment bench").digest()
    block = (seed * (_BLOCK // len(seed) + 1))[:_BLOCK]
    remaining = megabytes * 1024 * 1024
    counter = 0
    with path.open("wb") as out:
        out.write(
            (
                "From: =?utf-8?B?0JjQstCw0L0g0J/QtdGC0YDQvtCy?= <petrov@roga-kopyta.ru>\r\n"
                "To: info@sis.ru\r\n"
                "Subject: =?utf-8?B?0JTQsNC80L8g0L/QsNC80Y/RgtC4INGB0LXRgNCy0LXRgNCw?=\r\n"
                "Message-ID: <big-dump-bench@roga-kopyta.ru>\r\n"
                "Date: Mon, 3 Mar 2025 10:00:00 +0300\r\nMIME-Version: 1.0\r\n"
                "X-Mailer: Microsoft Outlook 16.0\r\n"
                f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
                f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n"
            ).encode()
            + "Добрый день! Сервер Cubisio 3.2.1 упал, дамп памяти во вложении.\r\n".encode()
            + (
                f'--{boundary}\r\nContent-Type: application/octet-stream; name="cubisio.dmp"\r\n'
                "Content-Transfer-Encoding: base64\r\n"
                'Content-Disposition: attachment; filename="cubisio.dmp"\r\n\r\n'
            ).encode()
        )
        while remaining:
            # Distinct blocks (a counter mixed in), so the dump is not one repeated pattern.
            chunk = hashlib.sha256(counter.to_bytes(8, "big")).digest() + block[32:]
            chunk = chunk[: min(_BLOCK, remaining)]
            digest.update(chunk)
            out.write(base64.encodebytes(chunk).replace(b"\n", b"\r\n"))
            remaining -= len(chunk)
            counter += 1
        out.write(f"--{boundary}--\r\n".encode())
    return digest.hexdigest()


def run_once(message: Path, expected_sha: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=message.parent) as work:
        config = Path(work) / "maild.toml"
        config.write_text(MAILD_CONFIG)
        maild = [sys.executable, "-m", "maild", "--config", str(config)]
        subprocess.run([*maild, "init"], capture_output=True, check=True)
        seconds, peak, stdout = measure_child([*maild, "ingest", "--json", str(message)])
        decision = json.loads(stdout)
        if decision["action"] != "new_ticket":
            raise RuntimeError(f"unexpected decision {decision}")
        listing = subprocess.run(
            [*maild, "artifacts", "list", "1", "--json"], capture_output=True, check=True
        )
        (item,) = json.loads(listing.stdout)
        if item["sha256"] != expected_sha:
            raise RuntimeError("the stored dump is not the dump that was sent")
        out = Path(work) / "back.dmp"
        subprocess.run(
            [*maild, "artifacts", "get", str(item["id"]), "--out", str(out)],
            capture_output=True, check=True,
        )  # fmt: skip
        if out.stat().st_size != item["size"]:
            raise RuntimeError("the exported dump has the wrong size")
    return seconds, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="dump size in MiB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the message (needs ~4x space)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        message = Path(folder) / "big.eml"
        started = time.perf_counter()
        expected = write_message(message, args.mb)
        size_mb = message.stat().st_size / 1024 / 1024
        print(f"message: {size_mb:.0f} MB on disk ({args.mb} MiB dump), "
              f"written in {time.perf_counter() - started:.1f} s")  # fmt: skip
        runs = [run_once(message, expected) for _ in range(args.repeat)]
    seconds = statistics.median(run[0] for run in runs)
    peak = statistics.median(run[1] for run in runs)
    print(f"runs: {', '.join(f'{s:.1f} s / {p:.0f} MB' for s, p in runs)}")
    print(
        f"median: {seconds:.1f} s, {size_mb / seconds:.1f} MB/s of mail, "
        f"peak RSS {peak:.0f} MB (aim < 200 MB: {'met' if peak < 200 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
