"""Log line formats: the human one for a terminal, JSON lines for a log collector.

The JSON format writes one object per line, so a collector never has to guess where a
multi-line traceback ends, and masks the configured secrets (database and IMAP passwords):
they reach the log through exception messages and connection URLs, and log collectors keep
and index everything they are sent.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from maild.terminal import json_text, printable

MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _TextFormatter(logging.Formatter):
    """The terminal format: control characters in a logged value shown as escapes, not obeyed."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO-8601 UTC with milliseconds, from record.created),
    level, logger, message, exception (the traceback, when there is one), process and thread.
    Non-ASCII stays as it is; a registered secret in the message or the traceback becomes ***.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms.add(secret)
                # A traceback shows a str argument by its repr: quotes and backslashes escaped.
                forms.add(repr(secret)[1:-1])
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(forms, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """`text` with every registered secret replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": self.mask(record.getMessage()),
        }
        if record.exc_info:
            # Not cached on the record (as Formatter.format does): other handlers may format
            # the same record, and must not see our masked text as the original.
            entry["exception"] = self.mask(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = self.mask(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.mask(self.formatStack(record.stack_info))
        entry["process"] = record.process
        entry["thread"] = record.threadName
        return json_text(entry)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """ISO-8601 in UTC with milliseconds and a Z, whatever the host's time zone."""
        del datefmt
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Replace the root logger's handlers with one on stderr in `fmt`: "text" or "json".

    `level` is a level name ("INFO"); an unknown level or format raises ValueError before
    anything changes, so a typo in the configuration does not leave the process without logs.
    """
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        raise ValueError(
            f"unknown log level {level!r}: expected one of DEBUG, INFO, WARNING, ERROR"
        )
    formatter: logging.Formatter
    if fmt == "text":
        formatter = _TextFormatter(TEXT_FORMAT)
    elif fmt == "json":
        formatter = JsonFormatter(secrets)
    else:
        raise ValueError(f"unknown log format {fmt!r}: expected 'text' or 'json'")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levels[level.upper()])
