"""Engineer commands: the `#word argument` lines at the top of an engineer's mail.

Pure functions only: splitting a text into commands and the body, and checking each
command's argument. What a command does to a ticket is `maild.engineer`'s business.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from maild.config import CRITICALITIES

_COMMAND_LINE = re.compile(r"^\s*#[ \t]?([^\W\d][\w-]*)[ \t]*:?(?:[ \t]+(.*?))?\s*$")
"""`#word argument`, also as people mistype it (`# comment`, `#comment: text`) and in any
script (`#комментарий`): a near-miss must be refused, never read as text for the client."""
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+$")


class Name(enum.StrEnum):
    COMMENT = "comment"
    TAKE = "take"
    ASSIGN = "assign"
    PRIORITY = "priority"
    STATUS = "status"
    CLOSE = "close"
    MERGE = "merge"
    CC = "cc"
    REQUEST = "request"
    NEW = "new"
    HELP = "help"


STATUSES = ("open", "waiting", "resolved", "closed")
CLOSE_REASONS = (
    "solved", "workaround", "fixed_in_version", "out_of_scope", "not_our_software",
    "not_reproducible", "no_information", "conduct",
)  # fmt: skip
"""The regulation's ways a ticket ends; each has a template the client receives."""
REQUEST_ITEMS = ("version", "remote", "logs", "dump")
CHANNELS = ("phone", "telegram", "web", "dedicated", "email", "other")
"""The regulation's channels; `#new` records which one a request came by."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    """Lower-case word after '#'; may be unknown (then the command is refused)."""
    argument: str
    line: str
    """The line as written, for the confirmation."""

    @property
    def known(self) -> bool:
        return self.name in Name.__members__.values()


@dataclass(frozen=True, slots=True)
class EngineerText:
    commands: tuple[Command, ...]
    body: str
    """What follows the command lines: the answer (or the comment)."""

    @property
    def is_comment(self) -> bool:
        return any(command.name == Name.COMMENT for command in self.commands)

    def named(self, name: Name) -> list[Command]:
        return [command for command in self.commands if command.name == name]


def split_commands(text: str) -> EngineerText:
    """Command lines are read from the top until the first line that is neither a command
    nor blank; `#` further down is ordinary text (a C preprocessor line, a hashtag)."""
    lines = text.splitlines()
    commands: list[Command] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        match = _COMMAND_LINE.match(line)
        if match is None:
            break
        name = match.group(1).lower().replace("-", "_")
        commands.append(Command(name, (match.group(2) or "").strip(), line.strip()))
        index += 1
    if not commands:
        return EngineerText((), text)
    # `#comment the key is in the log` says its text on the command line.
    said = [c.argument for c in commands if c.name == Name.COMMENT and c.argument]
    body = "\n".join([*said, "\n".join(lines[index:]).strip("\n")]).strip("\n")
    return EngineerText(tuple(commands), body)


# --- argument checks: a value, or a refusal reason -------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    """Stable code, e.g. unknown_value; the template turns it into a sentence."""
    allowed: tuple[str, ...] = ()


def choice(argument: str, allowed: Sequence[str]) -> str | Refusal:
    word = argument.strip().lower().replace("-", "_")
    if not word:
        return Refusal("missing_argument", tuple(allowed))
    if word not in allowed:
        return Refusal("unknown_value", tuple(allowed))
    return word


def priority(argument: str) -> str | Refusal:
    return choice(argument, CRITICALITIES)


def request_items(argument: str) -> tuple[str, ...] | Refusal:
    """`#request logs dump` or `#request logs, dump`: one mail asks for all of them."""
    words = [w for w in re.split(r"[\s,;]+", argument.strip().lower()) if w]
    if not words:
        return Refusal("missing_argument", REQUEST_ITEMS)
    if any(word not in REQUEST_ITEMS for word in words):
        return Refusal("unknown_value", REQUEST_ITEMS)
    return tuple(dict.fromkeys(words))


def address(argument: str) -> str | Refusal:
    value = argument.strip().strip("<>").lower()
    if not value:
        return Refusal("missing_argument")
    if not _ADDRESS.match(value):
        return Refusal("bad_address")
    return value


def new_request(argument: str) -> tuple[str, str] | Refusal:
    """`#new client@firm.ru [phone|telegram|web|dedicated|email|other]`, phone by default."""
    words = argument.split()
    if not words:
        return Refusal("missing_argument")
    client = address(words[0])
    if isinstance(client, Refusal):
        return client
    channel = choice(words[1], CHANNELS) if len(words) > 1 else "phone"
    if isinstance(channel, Refusal):
        return channel
    return client, channel


def ticket_number(argument: str) -> int | Refusal:
    value = argument.strip().lstrip("#№").strip()
    if not value:
        return Refusal("missing_argument")
    if not value.isdigit() or int(value) <= 0:
        return Refusal("bad_ticket_number")
    return int(value)


@dataclass(frozen=True, slots=True)
class EngineerEntry:
    email: str
    name: str


def find_engineer(argument: str, engineers: Sequence[EngineerEntry]) -> EngineerEntry | Refusal:
    """By address, full name, or one word of the name (surname); an ambiguous word is refused
    rather than guessed."""
    wanted = argument.strip().strip("<>").lower()
    if not wanted:
        return Refusal("missing_argument")
    for engineer in engineers:
        if engineer.email == wanted or engineer.name.lower() == wanted:
            return engineer
    folded = _fold(wanted)
    local = [e for e in engineers if e.email.partition("@")[0] == wanted]
    by_word = [e for e in engineers if folded in _fold(e.name).split()]
    matches = local or by_word or [e for e in engineers if folded in _fold(e.name)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        return Refusal("ambiguous_engineer", tuple(e.email for e in matches))
    return Refusal("unknown_engineer", tuple(e.email for e in engineers))


def _fold(text: str) -> str:
    return text.lower().replace("ё", "е")
