"""Text for an operator's terminal: what a client wrote is shown, never obeyed.

A subject, a display name, a body or a filename can carry escape sequences (ESC ] 0 ; ... BEL
retitles the window, ESC [ 2 J clears it, ESC [ 8 m hides text, OSC 52 writes the clipboard),
single-byte C1 controls that some terminals take for ESC [ (U+009B), and bidi overrides that
make text read backwards. `printable` turns each into a visible escape, so the operator sees
that it was there and the terminal does nothing with it. `json_text` does the same for JSON
output, which `json.dumps(ensure_ascii=False)` leaves raw past C0 (DEL, C1 and bidi pass).
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, TextIO

# C0 controls but tab and newline, DEL, C1 controls, bidi embeddings, overrides and isolates.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What json.dumps(ensure_ascii=False) leaves raw that a terminal may act on (it escapes C0),
# and U+2028/U+2029, which line-splitting readers (str.splitlines among them) take for an
# end of line: one JSON object must stay one line (`--json`, JSON logs).
_JSON_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def printable(text: str) -> str:
    """`text` with every control but newline and tab, and every bidi override, as `\\x1b` or
    `\\u202e`: safe to write to a terminal, and the operator sees what the sender put there."""
    return _UNPRINTABLE.sub(_visible, text)


def json_text(value: Any) -> str:
    """`value` as one line of JSON that a terminal can show safely and any parser reads back
    unchanged: DEL, C1 and bidi characters as `\\u` escapes, the rest of Unicode as it is."""
    return _JSON_UNPRINTABLE.sub(_json_escape, json.dumps(value, ensure_ascii=False))


def say(text: str, stream: TextIO | None = None) -> None:
    """Every human-readable line goes out here: what clients wrote cannot drive the terminal."""
    (stream or sys.stdout).write(printable(text) + "\n")


def print_json(value: Any, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(json_text(value) + "\n")
