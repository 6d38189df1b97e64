"""Process limits: open files, listener sessions, and log lines under a flood (issue 13).

Every decision about "one more?" lives here, pure enough to test without a socket:
- `raise_open_file_limit` lifts the soft RLIMIT_NOFILE to the hard limit at start;
- `DescriptorReserve` says whether a new session would eat the descriptors the spool worker
  needs (its database, its spool and artifact files);
- `SessionGate` counts a listener's sessions, in all and per peer address, and names the
  reason for refusing one more;
- `LogThrottle` turns a storm of identical failures into one line per window.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

DESCRIPTOR_RESERVE = 64
"""Descriptors kept free for everything but listener sessions (worker, database, IMAP)."""
NO_HARD_LIMIT_TARGET = 65536
"""The soft limit to ask for where the hard limit is unlimited (BSD, macOS)."""
_DESCRIPTOR_FOLDERS = ("/proc/self/fd", "/dev/fd")


@dataclass(frozen=True, slots=True)
class FileLimit:
    before: int
    soft: int
    hard: int


def raise_open_file_limit() -> FileLimit:
    """Lift the soft limit on open files to the hard one (a daemon that holds sessions and
    files at once needs more than the usual 1,024); log what was done."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, NO_HARD_LIMIT_TARGET)
    if soft == resource.RLIM_INFINITY or soft >= target:
        log.info("open file limit %s (hard limit %s)", soft, _limit_text(hard))
        return FileLimit(soft, soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        log.warning("open file limit stays %s: raising it to %s failed: %s", soft, target, error)
        return FileLimit(soft, soft, hard)
    log.info("open file limit raised from %s to %s (the hard limit)", soft, target)
    return FileLimit(soft, target, hard)


def _limit_text(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def count_open_descriptors() -> int | None:
    """How many files this process has open, or None where the system cannot say."""
    for folder in _DESCRIPTOR_FOLDERS:
        try:
            with os.scandir(folder) as entries:
                return sum(1 for _ in entries) - 1  # minus the one scandir itself holds
        except FileNotFoundError:
            continue
    return None


def soft_open_file_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class DescriptorReserve:
    """Is there room for one more session without touching the reserve? Counted afresh each
    time (about 0.1 ms per hundred open files), so files opened elsewhere are seen too."""

    def __init__(
        self,
        reserve: int = DESCRIPTOR_RESERVE,
        *,
        count: Callable[[], int | None] = count_open_descriptors,
        limit: Callable[[], int] = soft_open_file_limit,
    ) -> None:
        self.reserve = reserve
        self._count = count
        self._limit = limit

    def has_room(self) -> bool:
        limit = self._limit()
        if limit == resource.RLIM_INFINITY:
            return True
        try:
            used = self._count()
        except OSError:  # EMFILE while counting: no room at all
            return False
        return used is None or used + self.reserve < limit


class Refusal(enum.StrEnum):
    """Why a listener said 421 to a new session (stable codes, as in logs)."""

    TOO_MANY_SESSIONS = "too_many_sessions"
    TOO_MANY_FROM_PEER = "too_many_sessions_from_peer"
    DESCRIPTORS_LOW = "file_descriptors_low"


class SessionGate:
    """Open sessions of one listener, in all and per peer address.

    `admit` counts a session in when it returns None; every admitted session must be
    `release`d exactly once. Thread-safe, though a listener calls it from its one loop.
    """

    def __init__(
        self, max_sessions: int, max_per_peer: int, descriptors: DescriptorReserve | None = None
    ) -> None:
        self.max_sessions = max_sessions
        self.max_per_peer = max_per_peer
        self.descriptors = descriptors or DescriptorReserve()
        self._per_peer: dict[str, int] = {}
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open_sessions(self) -> int:
        return self._open

    def sessions_from(self, peer: str) -> int:
        return self._per_peer.get(peer, 0)

    def admit(self, peer: str) -> Refusal | None:
        with self._lock:
            if self._per_peer.get(peer, 0) >= self.max_per_peer:
                return Refusal.TOO_MANY_FROM_PEER  # first: tell the peer that hogs it is them
            if self._open >= self.max_sessions:
                return Refusal.TOO_MANY_SESSIONS
            if not self.descriptors.has_room():
                return Refusal.DESCRIPTORS_LOW
            self._open += 1
            self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
            return None

    def release(self, peer: str) -> None:
        with self._lock:
            self._open -= 1
            left = self._per_peer.pop(peer, 0) - 1
            if left > 0:
                self._per_peer[peer] = left


class LogThrottle:
    """At most one line per `window_seconds`, carrying the count of the lines held back.

    For failures that repeat as fast as an attacker can make them (an accept loop out of
    descriptors, a spool on a full disk): one line is news, a million rotate the log away.
    The count goes out with the next line after the window; called inside a running asyncio
    loop (the listeners), the throttle also writes the last held-back line when the window
    ends, so the tail of a storm is never silent.
    """

    def __init__(
        self,
        logger: logging.Logger,
        window_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.window_seconds = window_seconds
        self._monotonic = monotonic
        self._last: float | None = None
        self._held: tuple[int, str, tuple[object, ...]] | None = None
        """The last held-back line: level, message, arguments."""
        self._suppressed = 0
        self._flush_due = False
        self._lock = threading.Lock()

    def log(self, level: int, message: str, *args: object) -> bool:
        """Log `message` unless a line went out within the window; True when it was logged."""
        with self._lock:
            now = self._monotonic()
            if self._last is not None and now - self._last < self.window_seconds:
                self._suppressed += 1
                self._held = (level, message, args)
                if not self._flush_due:
                    self._flush_due = self._flush_at_window_end(now - self._last)
                return False
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
            self._held = None
        self._emit(level, message, args, suppressed)
        return True

    def flush(self) -> None:
        """Write the last held-back line now, with the count of the others."""
        with self._lock:
            self._flush_due = False
            if self._held is None:
                return
            (level, message, args), self._held = self._held, None
            suppressed, self._suppressed, self._last = self._suppressed - 1, 0, self._monotonic()
        self._emit(level, message, args, suppressed)

    def _flush_at_window_end(self, elapsed: float) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a loop: the next line after the window says it
            return False
        loop.call_later(self.window_seconds - elapsed, self.flush)
        return True

    def _emit(self, level: int, message: str, args: tuple[object, ...], suppressed: int) -> None:
        if suppressed:
            message += " (%s more like it since the previous line, not logged)"
            args = (*args, suppressed)
        self.logger.log(level, message, *args)
