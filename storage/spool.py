"""The inbound spool: raw bytes are durable here before any source is acknowledged.

A source calls `Spool.put` and acknowledges (SMTP 250, IMAP MOVE) only after it returns. The
worker processes `new/` in arrival order; a message stays in `new/` until its database
transaction has committed, so a crash at any point replays it, and the ledger
(`inbound_messages.spool_id`) turns the replay into a no-op.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from parsers.rawmail import RawMail
from storage.fsutil import write_durably


@dataclass(frozen=True, slots=True)
class SpoolMeta:
    """The JSON sidecar: where the message came from, never anything parsed from it."""

    source: str
    received_at: str
    envelope_from: str | None = None
    """MAIL FROM as the listener saw it: "" is the null reverse-path `<>`; None, unknown."""
    recipients: tuple[str, ...] = field(default_factory=tuple)
    peer: str = ""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    spool_id: str
    raw: RawMail
    meta: SpoolMeta


class SpoolWriter(Protocol):
    """What a source needs: `put` returns once the message is durable (a file here, a
    committed row in storage.shared_spool), and only then may the source acknowledge."""

    def put(self, raw: bytes, meta: SpoolMeta) -> str: ...


def new_spool_id() -> str:
    """Sortable by arrival time, unique across processes."""
    return f"{time.time_ns():020d}-{secrets.token_hex(6)}"


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.new = root / "new"

    def ensure(self) -> None:
        for folder in (self.tmp, self.new):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def put(self, raw: bytes, meta: SpoolMeta) -> str:
        spool_id = new_spool_id()
        sidecar = json.dumps(asdict(meta), ensure_ascii=False).encode()
        write_durably(self.new / f"{spool_id}.json", sidecar, self.tmp)
        write_durably(self.new / f"{spool_id}.eml", raw, self.tmp)
        return spool_id

    def sweep_leftovers(self) -> tuple[int, int]:
        """Remove what a crash or a full disk left behind: half-written `tmp/` files, and
        sidecars whose message was never written (`put` writes the sidecar first). Only
        safe while no one else writes this spool: `maild run` calls it before it listens."""
        temporary = 0
        for entry in os.scandir(self.tmp):
            if entry.is_file():
                Path(entry.path).unlink(missing_ok=True)
                temporary += 1
        orphans = 0
        for entry in os.scandir(self.new):
            if entry.name.endswith(".json") and not (self.new / f"{entry.name[:-5]}.eml").exists():
                Path(entry.path).unlink(missing_ok=True)
                orphans += 1
        return temporary, orphans

    def pending(self) -> list[str]:
        return sorted(
            entry.name[:-4] for entry in os.scandir(self.new) if entry.name.endswith(".eml")
        )

    def read(self, spool_id: str) -> SpoolEntry:
        raw = RawMail.from_file(self.new / f"{spool_id}.eml")
        sidecar = self.new / f"{spool_id}.json"
        if sidecar.exists():
            data = json.loads(sidecar.read_text())
            data["recipients"] = tuple(data.get("recipients", ()))
            meta = SpoolMeta(**data)
        else:
            meta = SpoolMeta(source="spool", received_at="")
        return SpoolEntry(spool_id, raw, meta)

    def remove(self, spool_id: str) -> None:
        """Forget a message whose processing has committed."""
        for suffix in (".eml", ".json"):
            (self.new / f"{spool_id}{suffix}").unlink(missing_ok=True)
