"""JSON log lines: one parseable object per record, secrets masked, Unicode kept."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

import pytest

from maild.logformat import JsonFormatter, configure_logging

HIDDEN = "s3cr3t-Pa55"


def make_record(msg, *args, exc_info=None, name="maild.test", level=logging.INFO):
    return logging.LogRecord(name, level, __file__, 10, msg, args, exc_info)


def current_exc_info(exc):
    try:
        raise exc
    except type(exc):
        return sys.exc_info()


@pytest.fixture
def root_logger():
    """The root logger as the test found it, whatever configure_logging did to it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_one_json_object_per_line_with_the_fields():
    record = make_record("ticket %s opened for %s", 42, "client@example.com")
    record.created = datetime(2024, 3, 5, 9, 7, 1, 234567, tzinfo=UTC).timestamp()

    line = JsonFormatter().format(record)

    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"] == "2024-03-05T09:07:01.234Z"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "maild.test"
    assert entry["message"] == "ticket 42 opened for client@example.com"
    assert entry["process"] == record.process
    assert entry["thread"] == record.threadName
    assert "exception" not in entry


@pytest.fixture
def far_east(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Vladivostok")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_time_is_utc_whatever_the_local_zone(far_east):
    assert time.localtime(0).tm_hour == 10  # the zone did change
    record = make_record("tick")
    record.created = 0.5
    assert json.loads(JsonFormatter().format(record))["time"] == "1970-01-01T00:00:00.500Z"


def test_russian_text_kept_as_is():
    line = JsonFormatter().format(make_record("Заявка %s: %s", 7, "не работает принтер"))
    assert "Заявка 7: не работает принтер" in line  # not \u escapes
    assert json.loads(line)["message"] == "Заявка 7: не работает принтер"


def test_multiline_message_and_exception_stay_on_one_line():
    exc_info = current_exc_info(RuntimeError("boom\nsecond line"))
    line = JsonFormatter().format(make_record("a\nb\u2028c\x1b[2J\x9b", exc_info=exc_info))
    assert len(line.splitlines()) == 1
    assert "\x1b" not in line
    assert "\x9b" not in line
    entry = json.loads(line)
    assert entry["message"] == "a\nb\u2028c\x1b[2J\x9b"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("RuntimeError: boom\nsecond line")


def test_secret_in_args_is_masked():
    formatter = JsonFormatter(secrets=[HIDDEN, ""])
    line = formatter.format(
        make_record("connecting to %s", f"postgresql://maild:{HIDDEN}@db/maild")
    )
    assert HIDDEN not in line
    assert json.loads(line)["message"] == "connecting to postgresql://maild:***@db/maild"


def test_secret_in_exception_is_masked():
    exc_info = current_exc_info(PermissionError(f"login failed for password {HIDDEN}"))
    line = JsonFormatter(secrets=[HIDDEN]).format(
        make_record("IMAP login failed", exc_info=exc_info, level=logging.ERROR)
    )
    assert HIDDEN not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["exception"].endswith("PermissionError: login failed for password ***")


def test_secret_escaped_by_a_repr_is_masked():
    # A traceback shows KeyError's argument by repr: the quote kept, the backslash doubled.
    hidden = "it's\\hidden"
    exc_info = current_exc_info(KeyError(hidden))
    line = JsonFormatter(secrets=[hidden]).format(make_record("lookup", exc_info=exc_info))
    exception = json.loads(line)["exception"]
    assert exception.endswith('KeyError: "***"')
    assert "hidden" not in exception


def test_masking_does_not_leak_into_other_handlers():
    exc_info = current_exc_info(ValueError(f"bad {HIDDEN}"))
    record = make_record("failed", exc_info=exc_info)
    JsonFormatter(secrets=[HIDDEN]).format(record)
    assert record.exc_text is None  # no masked traceback cached on the shared record


def test_configure_json_writes_json_to_stderr(root_logger, capsys):
    configure_logging("INFO", "json", secrets=[HIDDEN])

    assert len(root_logger.handlers) == 1
    logging.getLogger("maild.worker").info("processed %d messages with %s", 3, HIDDEN)
    logging.getLogger("maild.worker").debug("not at INFO")

    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["logger"] == "maild.worker"
    assert entry["level"] == "INFO"
    assert entry["message"] == "processed 3 messages with ***"


def test_configure_text_keeps_the_terminal_format(root_logger, capsys):
    configure_logging("warning", "text")

    logging.getLogger("maild.smtp").warning("refused %s\x1b]0;owned\x07", "mail")

    err = capsys.readouterr().err
    assert " WARNING maild.smtp: refused mail\\x1b]0;owned\\x07\n" in err
    assert "\x1b" not in err


def test_unknown_format_raises_and_changes_nothing(root_logger):
    handlers = list(root_logger.handlers)
    with pytest.raises(ValueError, match="'yaml'"):
        configure_logging("INFO", "yaml")
    with pytest.raises(ValueError, match="'LOUD'"):
        configure_logging("LOUD", "json")
    assert root_logger.handlers == handlers
