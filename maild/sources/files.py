"""`maild ingest` inputs: .eml files, Maildir folders, mbox files, folders of them, stdin."""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from maild.errors import ConfigError
from parsers.rawmail import RawMail

_MBOX_MAGIC = b"From "


@dataclass(frozen=True, slots=True)
class FileMessage:
    source: str
    raw: RawMail


def is_maildir(path: Path) -> bool:
    return all((path / sub).is_dir() for sub in ("cur", "new"))


def is_mbox(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(_MBOX_MAGIC)) == _MBOX_MAGIC


def input_size(paths: list[str]) -> int:
    """Total bytes to read, for a progress bar in bytes (mbox counts are unknown in advance)."""
    total = 0
    for name in paths:
        path = Path(name)
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(
                (Path(root) / file).stat().st_size
                for root, _, files in os.walk(path)
                for file in files
            )
    return total


def _maildir_messages(path: Path) -> Iterator[FileMessage]:
    """Each message is a file in new/ or cur/, named key[:2,flags]; read as files so that a
    large one is streamed, not loaded."""
    found = [
        (entry.name.split(":", 1)[0], Path(entry.path))
        for sub in ("new", "cur")
        for entry in os.scandir(path / sub)
        if entry.is_file() and not entry.name.startswith(".")
    ]
    for key, file in sorted(found):
        yield FileMessage(f"maildir:{path}/{key}", RawMail.from_file(file))


def _mbox_messages(path: Path) -> Iterator[FileMessage]:
    box = mailbox.mbox(path, factory=None, create=False)
    try:
        for index, key in enumerate(box.iterkeys()):
            yield FileMessage(f"mbox:{path}#{index}", RawMail.of(box.get_bytes(key)))
    finally:
        box.close()


def _folder_messages(path: Path) -> Iterator[FileMessage]:
    for root, dirs, files in os.walk(path):
        dirs.sort()
        folder = Path(root)
        if is_maildir(folder):
            dirs.clear()
            yield from _maildir_messages(folder)
            continue
        for name in sorted(files):
            if not name.startswith("."):
                yield from _file_messages(folder / name)


def _file_messages(path: Path) -> Iterator[FileMessage]:
    """An .eml file is one message even when an MTA put an mbox 'From ' line on top."""
    if path.suffix.lower() != ".eml" and is_mbox(path):
        yield from _mbox_messages(path)
        return
    raw = RawMail.from_file(path)
    if raw.data is not None and raw.data.startswith(_MBOX_MAGIC):
        # A large file keeps its From_ line; the parser reads it as the envelope line.
        raw = RawMail.of(raw.data.split(b"\n", 1)[1] if b"\n" in raw.data else b"")
    yield FileMessage(f"file:{path}", raw)


def read_stdin(stream: BinaryIO) -> Iterator[FileMessage]:
    data = stream.read()
    if not data.startswith(_MBOX_MAGIC):
        yield FileMessage("stdin", RawMail.of(data))
        return
    for index, chunk in enumerate(_split_mbox_bytes(data)):
        yield FileMessage(f"stdin#{index}", RawMail.of(chunk))


def _split_mbox_bytes(data: bytes) -> Iterator[bytes]:
    """mboxrd-style split on 'From ' at line starts, un-escaping '>From ' lines."""
    current: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(_MBOX_MAGIC):
            if current:
                yield b"".join(current)
            current = []
            continue
        if line.startswith(b">") and line.lstrip(b">").startswith(_MBOX_MAGIC):
            line = line[1:]
        current.append(line)
    if current:
        yield b"".join(current)


def iter_messages(paths: list[str], stdin: BinaryIO) -> Iterator[FileMessage]:
    for name in paths:
        if name == "-":
            yield from read_stdin(stdin)
            continue
        path = Path(name)
        if path.is_dir():
            yield from _maildir_messages(path) if is_maildir(path) else _folder_messages(path)
        elif path.is_file():
            yield from _file_messages(path)
        else:
            raise ConfigError(f"{name}: no such file or folder")
