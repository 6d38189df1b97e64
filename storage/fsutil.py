"""Crash-safe file writes: tmp, fsync, rename, fsync the folder (Mailman's switchboard recipe).

And private ones: what maild keeps (raw mail, attachments, the database, keys) is for its own
user alone. Files are created 0600 (never more) whatever the umask; `make_private` takes group
and other permissions away from what an older maild or a loose umask left behind.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)
PRIVATE_FILE_MODE = 0o600
_GROUP_AND_OTHER = 0o077


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_private(path: Path) -> int:
    """A new empty file readable by its owner only; a leftover of the same name (a crashed
    process with our pid) is replaced, not reused, so its mode does not carry over."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, PRIVATE_FILE_MODE)
    except FileExistsError:
        path.unlink()
        return os.open(path, flags, PRIVATE_FILE_MODE)


def write_durably(final: Path, data: bytes, tmp_dir: Path, *, sync_folder: bool = True) -> None:
    """Make `final` hold `data` or not exist at all, whatever moment the process dies.
    The file is 0600 (never more) whatever the umask: it may be a client's mail.
    `sync_folder=False`: the caller fsyncs the folder itself, once for many files."""
    tmp = tmp_dir / f"{final.name}.{os.getpid()}.tmp"
    fd = _create_private(tmp)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(final)
    if sync_folder:
        fsync_dir(final.parent)


def _tighten(path: Path, mode: int) -> bool:
    """Drop group and other permissions from one entry; False if it had none or is not ours."""
    if not mode & _GROUP_AND_OTHER:
        return False
    try:
        path.chmod(stat.S_IMODE(mode) & ~_GROUP_AND_OTHER)
    except PermissionError:
        log.warning("cannot make %s private: it belongs to another user", path)
        return False
    except FileNotFoundError:
        return False
    log.debug("made %s private (was %04o)", path, stat.S_IMODE(mode))
    return True


def make_private(root: Path, *, recursive: bool = True) -> int:
    """Take group and other permissions away from `root` and, if it is a folder and
    `recursive`, everything in it (folders 0700, files 0600 as a rule); symbolic links inside
    are neither changed nor followed. Returns how many entries changed; a missing `root`
    changes nothing."""
    try:
        mode = root.stat().st_mode
    except FileNotFoundError:
        return 0
    changed = int(_tighten(root, mode))
    folders = [str(root)] if recursive and stat.S_ISDIR(mode) else []
    while folders:
        try:
            entries = list(os.scandir(folders.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_symlink():
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            changed += _tighten(Path(entry.path), mode)
            if stat.S_ISDIR(mode):
                folders.append(entry.path)
    return changed


def exclusive_folders(owned: Collection[Path], protected: Collection[Path]) -> list[Path]:
    """The folders above `owned` paths that hold nothing else (nor anything but such folders),
    nearest first: the `var/` that holds the database, the spool and the artifacts, the
    folder of the key file. A folder in `protected`, the filesystem root, or one holding
    anything else (a backup, another program's files) is not one of them."""
    mine = {Path(path) for path in owned}
    found: list[Path] = []
    pending = sorted({path.parent for path in mine}, key=lambda path: -len(path.parts))
    while pending:
        folder = pending.pop(0)
        if folder in mine or folder in protected or folder == folder.parent:
            continue
        try:
            children = list(folder.iterdir())
        except OSError:
            continue
        if all(child in mine for child in children):
            mine.add(folder)
            found.append(folder)
            pending.append(folder.parent)
    return found
