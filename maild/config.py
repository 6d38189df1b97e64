"""Configuration: one TOML file, validated at start into frozen dataclasses.

Every key is declared once in `_SCHEMA`; an unknown key or a bad value stops maild with the
dotted key named. Relative paths are relative to the folder of the config file (or to the
working directory when maild runs on its embedded defaults).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from maild.errors import ConfigError

ENV_CONFIG = "MAILD_CONFIG"
_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_LANGUAGES = ("ru", "en")
MAX_TELEGRAM_POLL_SECONDS = 50


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    address: str
    comment_address: str | None
    display_name: str


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str


@dataclass(frozen=True, slots=True)
class ArtifactsConfig:
    path: Path
    key_file: Path
    max_attachment_bytes: int
    max_message_bytes: int
    """All accepted attachments of one message together; later ones are refused."""
    retention_days: int
    """Artifacts of tickets closed longer than this are purged; 0 keeps them forever."""
    max_parts: int = 1000
    """MIME parts of one message that are looked at; the rest are counted and refused."""


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    transport: str
    from_header: str
    max_attempts: int
    retry_seconds: int


@dataclass(frozen=True, slots=True)
class WebInboundConfig:
    """The site's request form (`[inbound.web]`): an HTTP listener beside the SMTP one."""

    host: str
    port: int
    per_peer_per_minute: int = 5
    """Submissions from one IP address in any minute; more are answered 429."""
    per_email_per_hour: int = 10
    """Submissions naming one email address in any hour (a form is not a mail bomb)."""
    max_request_bytes: int = 64 * 1024 * 1024
    """One submission with its files, as it is held in memory while it is read."""
    trusted_proxies: tuple[str, ...] = ()
    """The site's reverse proxies: behind them the client is the last address they add to
    X-Forwarded-For; from anyone else that header is ignored."""


@dataclass(frozen=True, slots=True)
class TelegramInboundConfig:
    """The product's Telegram bot (`[inbound.telegram]`): private chats become tickets."""

    token_file: Path
    api_url: str = "https://api.telegram.org"
    """The Bot API server: Telegram's, or a local Bot API server (or a test's stand-in)."""
    poll_seconds: int = 25
    """How long one getUpdates long poll waits for a message before asking again."""

    def token(self) -> str:
        """Read when the bot starts, never kept in the config object or logged."""
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(
                f"inbound.telegram.token_file: cannot read {self.token_file}: {error.strerror}"
            ) from None
        if not re.fullmatch(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,}", token):
            raise ConfigError(
                f"inbound.telegram.token_file: {self.token_file} does not hold a bot token "
                "(digits, a colon, then the secret, as @BotFather gives it)"
            )
        return token


@dataclass(frozen=True, slots=True)
class SmtpInboundConfig:
    host: str
    port: int
    lmtp: bool
    max_message_bytes: int
    hostname: str = "localhost"
    """The name in the greeting and in the Received line maild prepends."""
    max_sessions: int = 100
    """Open sessions at once; one more is answered `421 4.7.0` and closed."""
    max_sessions_per_peer: int = 20
    idle_timeout_seconds: int = 60
    """A session silent this long is closed (aiosmtpd's own default is 300)."""
    max_recipients: int = 100
    """RCPT per transaction; more get `452 4.5.3` (RFC 5321 4.5.3.1.8)."""


@dataclass(frozen=True, slots=True)
class ImapMailboxConfig:
    """One watched mailbox; `name` is the table name ('default' for a single [inbound.imap])."""

    name: str
    host: str
    port: int
    ssl: bool
    starttls: bool
    ca_file: Path | None
    """Certificates to trust instead of the system's (a server with its own CA)."""
    user: str
    password_file: Path | None
    password_env: str | None
    folder: str
    processed_folder: str
    quarantine_folder: str
    idle: bool
    idle_seconds: int
    poll_seconds: int
    contract: str | None = None
    """A client's own mailbox names the contract its mail is served under."""

    def password(self) -> str:
        """Read at connect time, never kept in the config object or logged."""
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigError(
                    f"inbound.imap.{self.name}.password_file: cannot read {self.password_file}: "
                    f"{error.strerror}"
                ) from None
        value = os.environ.get(self.password_env or "")
        if not value:
            raise ConfigError(
                f"inbound.imap.{self.name}.password_env: ${self.password_env} is not set"
            )
        return value


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    path: Path


@dataclass(frozen=True, slots=True)
class TicketsConfig:
    language: str
    reopen_days: int
    public_domains: frozenset[str]
    timezone: str = "Europe/Moscow"
    """Times in mail to engineers and clients are shown in this zone."""


@dataclass(frozen=True, slots=True)
class GuardConfig:
    autoreply_limit: int


@dataclass(frozen=True, slots=True)
class EngineerConfig:
    email: str
    name: str


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    trusted_authserv_ids: tuple[str, ...]
    trusted_relays: tuple[str, ...]
    mx_peers: tuple[str, ...] = ()
    """Networks of the MX that delivers to the SMTP/LMTP listener: only mail handed over by
    one of them (or fetched from the IMAP mailbox the MX fills) has Authentication-Results
    worth reading."""


@dataclass(frozen=True, slots=True)
class NotificationsConfig:
    team_address: str | None
    """Where notices of unassigned tickets go; None = to every engineer."""


CRITICALITIES = ("critical", "high", "normal", "low")


SLA_MODES = ("business", "24x7")


@dataclass(frozen=True, slots=True)
class SlaConfig:
    """Targets in hours per criticality: the public offer, for senders under no contract.

    Hours of the mode's clock: working hours of the production calendar in business mode.
    """

    first_response_hours: Mapping[str, float]
    resolution_hours: Mapping[str, float]
    mode: str = "business"


@dataclass(frozen=True, slots=True)
class ContractConfig:
    """A client's contract: whose mail it covers and the support it promises."""

    name: str
    domains: frozenset[str]
    addresses: frozenset[str]
    mode: str
    first_response_hours: Mapping[str, float]
    resolution_hours: Mapping[str, float]
    default_criticality: str | None = None
    engineers: tuple[str, ...] = ()
    """Engineers who serve this contract (assignment on arrival); empty = all."""


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """A dedicated client address (stroymontazh@support.sis.ru) that names its contract."""

    address: str
    contract: str


@dataclass(frozen=True, slots=True)
class CalendarConfig:
    timezone: str = "Europe/Moscow"
    working_hours: str = "09:00-18:00"
    lunch: str | None = "13:00-14:00"
    extra_file: Path | None = None
    """More decreed years, or corrections, in the format of worktime/data/ru.toml."""


@dataclass(frozen=True, slots=True)
class CriticalityRuleConfig:
    level: str
    phrases: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class EscalationConfig:
    at: tuple[float, ...] = (0.75, 1.0)
    """Fractions of each SLA target at which the assignee (else the team) is told."""
    managers: tuple[str, ...] = ()
    """Told from the last fraction on."""


@dataclass(frozen=True, slots=True)
class CooperationConfig:
    remind_after_days: tuple[int, ...] = (3, 7)
    """Working days a ticket waits for the client before each reminder."""
    close_after_days: int = 10
    """Working days of silence after which a waiting ticket closes as no_information."""


ASSIGNMENT_MODES = ("none", "round_robin", "least_loaded")
PLAN_METRICS = (
    "sla_first_response", "sla_resolution", "median_first_response_minutes",
    "median_resolution_minutes", "open_at_end",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """A target the department set itself: per cent for SLA compliance (at least), working
    minutes for medians and a count for open tickets (at most)."""

    metric: str
    target: float
    period: str | None = None
    """"2026-10" or "2026-Q4"; None = every period."""
    contract: str | None = None


@dataclass(frozen=True, slots=True)
class DigestConfig:
    time: str = "09:00"
    """When the digest goes out on working days, in the calendar's zone."""
    recipients: tuple[str, ...] = ()
    """Empty = the escalation managers."""


@dataclass(frozen=True, slots=True)
class ReportsConfig:
    recipients: tuple[str, ...] = ()
    """Who gets the reports; empty = the escalation managers."""
    monthly: bool = True
    quarterly: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; passed explicitly, never global."""

    base_dir: Path
    source_file: Path | None
    mailbox: MailboxConfig
    token_prefix: str
    database: DatabaseConfig
    artifacts: ArtifactsConfig
    outbound: OutboundConfig
    smtp: SmtpInboundConfig | None
    lmtp: SmtpInboundConfig | None
    web: WebInboundConfig | None
    imap: tuple[ImapMailboxConfig, ...]
    spool: SpoolConfig
    tickets: TicketsConfig
    guard: GuardConfig
    engineers: tuple[EngineerConfig, ...]
    security: SecurityConfig
    notifications: NotificationsConfig = field(default=NotificationsConfig(None))
    sla: SlaConfig = field(
        default=SlaConfig(
            {"critical": 1, "high": 4, "normal": 8, "low": 24},
            {"critical": 24, "high": 72, "normal": 240, "low": 480},
            "business",
        )
    )
    log_level: str = field(default="INFO")
    log_format: str = "text"
    """text, or json: one JSON object per line for a log collector."""
    metrics_listen: tuple[str, int] | None = None
    """Where the Prometheus endpoint listens; None: no endpoint."""
    telegram: TelegramInboundConfig | None = None
    calendar: CalendarConfig = field(default=CalendarConfig())
    contracts: tuple[ContractConfig, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()
    criticality_rules: tuple[CriticalityRuleConfig, ...] = ()
    escalation: EscalationConfig = field(default=EscalationConfig())
    cooperation: CooperationConfig = field(default=CooperationConfig())
    assignment_mode: str = "none"
    scheduler_seconds: int = 60
    plans: tuple[PlanConfig, ...] = ()
    reports: ReportsConfig = field(default=ReportsConfig())
    digest: DigestConfig = field(default=DigestConfig())

    @property
    def mail_domain(self) -> str:
        """The domain of the support address, used in the Message-IDs maild makes."""
        return self.mailbox.address.rpartition("@")[2]


# --- value checkers: each returns the cleaned value or raises ValueError with a reason ---


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def _email(value: Any) -> str:
    text = _string(value)
    if not _EMAIL_RE.match(text):
        raise ValueError(f"{text!r} is not an email address")
    return text.lower()


def _from_header(value: Any) -> str:
    text = _string(value)
    _, address = parseaddr(text)
    _email(address)
    return text


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("expected a positive integer")
    return value


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected an integer >= 0")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")  # noqa: TRY004 - checkers raise ValueError
    return value


def _token_prefix(value: Any) -> str:
    text = _string(value)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,15}", text):
        raise ValueError("expected 1-16 letters, digits, '-' or '_', starting with a letter")
    return text


def _language(value: Any) -> str:
    text = _string(value)
    if text not in _LANGUAGES:
        raise ValueError(f"expected one of {', '.join(_LANGUAGES)}")
    return text


def _log_level(value: Any) -> str:
    text = _string(value).upper()
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return text


def _database_url(value: Any) -> str:
    text = _string(value)
    if "://" not in text:
        raise ValueError("expected an SQLAlchemy URL such as sqlite:///var/maild.db")
    return text


def _transport(value: Any) -> str:
    text = _string(value)
    if text.startswith("maildir:") and len(text) > len("maildir:"):
        return text
    if re.fullmatch(r"smtp://[^:/\s]+:\d{1,5}/?", text):
        return text.rstrip("/")
    raise ValueError("expected maildir:PATH or smtp://host:port")


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError("expected a port number 1-65535")
    return value


def _http_url(value: Any) -> str:
    text = _string(value).rstrip("/")
    if not re.fullmatch(r"https?://[A-Za-z0-9.\[\]:-]+(/[^\s]*)?", text):
        raise ValueError("expected an http:// or https:// URL")
    return text


def _listen(value: Any) -> tuple[str, int]:
    text = _string(value)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected HOST:PORT, for example 127.0.0.1:2525")
    return host.strip("[]") or "127.0.0.1", int(port)


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of strings")
    return tuple(item.strip() for item in value)


def _relays(value: Any) -> tuple[str, ...]:
    items = _string_list(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", item):
                raise ValueError(f"{item!r} is neither a host name nor a network") from None
    return items


def _networks(value: Any) -> tuple[str, ...]:
    items = _string_list(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return items


def _hostname(value: Any) -> str:
    text = _string(value).lower()
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,62}\.?)*", text) or len(text) > 253:
        raise ValueError(f"{text!r} is not a host name")
    return text.rstrip(".")


def _domains(value: Any) -> frozenset[str]:
    return frozenset(item.lower() for item in _string_list(value))


def _hours_by_criticality(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError(  # noqa: TRY004 - checkers raise ValueError
            "expected a table such as { critical = 1, high = 4, normal = 8, low = 24 }"
        )
    unknown = sorted(set(value) - set(CRITICALITIES))
    if unknown:
        raise ValueError(f"unknown criticality {unknown[0]!r}; expected {', '.join(CRITICALITIES)}")
    missing = [level for level in CRITICALITIES if level not in value]
    if missing:
        raise ValueError(f"missing criticality {missing[0]!r}")
    hours: dict[str, float] = {}
    for level in CRITICALITIES:
        number = value[level]
        if isinstance(number, bool) or not isinstance(number, int | float) or number <= 0:
            raise ValueError(f"{level}: expected a positive number of hours")
        hours[level] = float(number)
    return hours


def _timezone(value: Any) -> str:
    text = _string(value)
    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} is not a time zone name such as Europe/Moscow") from None
    return text


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = _string(value)
        if text not in options:
            raise ValueError(f"{text!r}: expected one of {', '.join(options)}")
        return text

    return check


def _time_range(value: Any) -> str:
    text = _string(value)
    found = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)", text)
    if not found or found.group(1, 2) >= found.group(3, 4):
        raise ValueError(f"{text!r}: expected HH:MM-HH:MM, start before end")
    return text


def _clock_time(value: Any) -> str:
    text = _string(value)
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
        raise ValueError(f"{text!r}: expected HH:MM")
    return text


def _fractions(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a list of fractions such as [0.75, 1.0]")
    numbers = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not 0 < item <= 10:
            raise ValueError(f"{item!r}: expected a fraction of the target above 0 (1.0 = due)")
        numbers.append(float(item))
    return tuple(sorted(set(numbers)))


def _days_list(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of working days such as [3, 7]")  # noqa: TRY004
    return tuple(sorted({_positive_int(item) for item in value}))


def _emails(value: Any) -> tuple[str, ...]:
    return tuple(_email(item) for item in _string_list(value))


def _non_negative_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("expected a number >= 0")
    return float(value)


def _period_label(value: Any) -> str:
    text = _string(value).upper()
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2]|Q[1-4])", text):
        raise ValueError(f"{text!r}: expected a month 2026-10 or a quarter 2026-Q4")
    return text


def _criticality(value: Any) -> str:
    return _choice(CRITICALITIES)(value)


def _megabytes(value: Any) -> int:
    return _positive_int(value) * 1024 * 1024


Checker = Callable[[Any], Any]

_PUBLIC_DOMAINS = [
    "gmail.com", "googlemail.com", "yandex.ru", "ya.ru", "yandex.com", "mail.ru", "bk.ru",
    "list.ru", "inbox.ru", "internet.ru", "rambler.ru", "outlook.com", "hotmail.com",
    "live.com", "icloud.com", "me.com", "yahoo.com", "proton.me", "protonmail.com",
]  # fmt: skip

# section -> key -> (checker, default); a default of ... means the key is required.
_SCHEMA: dict[str, dict[str, tuple[Checker, Any]]] = {
    "mailbox": {
        "address": (_email, "info@sis.ru"),
        "comment_address": (_email, None),
        "display_name": (_string, "SIS Support"),
    },
    "tokens": {"prefix": (_token_prefix, "SIS")},
    "database": {"url": (_database_url, "sqlite:///var/maild.db")},
    "artifacts": {
        "path": (_string, "var/artifacts"),
        "key_file": (_string, "var/secrets/artifacts.key"),
        "max_attachment_mb": (_megabytes, 1024),
        "max_message_mb": (_megabytes, 2048),
        "retention_days": (_non_negative_int, 90),
        "max_parts": (_positive_int, 1000),
    },
    "outbound": {
        "transport": (_transport, "maildir:var/outbox"),
        "from": (_from_header, None),
        "max_attempts": (_positive_int, 12),
        "retry_seconds": (_positive_int, 60),
    },
    "inbound.smtp": {
        "listen": (_listen, "127.0.0.1:2525"),
        "max_message_mb": (_megabytes, 64),
        "enabled": (_boolean, True),
        "hostname": (_hostname, None),
        "max_sessions": (_positive_int, 100),
        "max_sessions_per_peer": (_positive_int, 20),
        "idle_timeout_seconds": (_positive_int, 60),
        "max_recipients": (_positive_int, 100),
    },
    "inbound.lmtp": {
        "listen": (_listen, "127.0.0.1:2424"),
        "max_message_mb": (_megabytes, 64),
        "enabled": (_boolean, False),
        "hostname": (_hostname, None),
        "max_sessions": (_positive_int, 100),
        "max_sessions_per_peer": (_positive_int, 20),
        "idle_timeout_seconds": (_positive_int, 60),
        "max_recipients": (_positive_int, 100),
    },
    "inbound.web": {
        "enabled": (_boolean, False),
        "listen": (_listen, "127.0.0.1:8025"),
        "per_peer_per_minute": (_positive_int, 5),
        "per_email_per_hour": (_positive_int, 10),
        "max_request_mb": (_megabytes, 64),
        "trusted_proxies": (_networks, []),
    },
    "inbound.telegram": {
        "enabled": (_boolean, False),
        "token_file": (_string, None),
        "api_url": (_http_url, "https://api.telegram.org"),
        "poll_seconds": (_positive_int, 25),
    },
    "spool": {"path": (_string, "var/spool")},
    "tickets": {
        "language": (_language, "ru"),
        "reopen_days": (_non_negative_int, 14),
        "public_domains": (_domains, _PUBLIC_DOMAINS),
        "timezone": (_timezone, "Europe/Moscow"),
    },
    "guard": {"autoreply_limit": (_non_negative_int, 5)},
    "security": {
        "trusted_authserv_ids": (_string_list, []),
        "trusted_relays": (_relays, []),
        "mx_peers": (_networks, []),
    },
    "logging": {"level": (_log_level, "INFO"), "format": (_choice(("text", "json")), "text")},
    "metrics": {"listen": (_listen, None)},
    "notifications": {"team_address": (_email, None)},
    "sla": {
        "first_response_hours": (
            _hours_by_criticality,
            {"critical": 1, "high": 4, "normal": 8, "low": 24},
        ),
        "resolution_hours": (
            _hours_by_criticality,
            {"critical": 24, "high": 72, "normal": 240, "low": 480},
        ),
        "mode": (_choice(SLA_MODES), "business"),
    },
    "calendar": {
        "timezone": (_timezone, "Europe/Moscow"),
        "working_hours": (_time_range, "09:00-18:00"),
        "lunch": (_time_range, "13:00-14:00"),
        "extra_file": (_string, None),
    },
    "escalation": {
        "at": (_fractions, [0.75, 1.0]),
        "managers": (_emails, []),
    },
    "cooperation": {
        "remind_after_days": (_days_list, [3, 7]),
        "close_after_days": (_positive_int, 10),
    },
    "assignment": {"mode": (_choice(ASSIGNMENT_MODES), "none")},
    "digest": {"time": (_clock_time, "09:00"), "recipients": (_emails, [])},
    "reports": {
        "recipients": (_emails, []),
        "monthly": (_boolean, True),
        "quarterly": (_boolean, True),
    },
    "scheduler": {"interval_seconds": (_positive_int, 60)},
}
_CONTRACT_KEYS: dict[str, tuple[Checker, Any]] = {
    "name": (_string, ...),
    "domains": (_domains, []),
    "addresses": (_emails, []),
    "mode": (_choice(SLA_MODES), "business"),
    "first_response_hours": (_hours_by_criticality, ...),
    "resolution_hours": (_hours_by_criticality, ...),
    "default_criticality": (_criticality, None),
    "engineers": (_emails, []),
}
_CHANNEL_KEYS: dict[str, tuple[Checker, Any]] = {
    "address": (_email, ...),
    "contract": (_string, ...),
}
_PLAN_KEYS: dict[str, tuple[Checker, Any]] = {
    "metric": (_choice(PLAN_METRICS), ...),
    "target": (_non_negative_number, ...),
    "period": (_period_label, None),
    "contract": (_string, None),
}
_RULE_KEYS: dict[str, tuple[Checker, Any]] = {
    "level": (_criticality, ...),
    "phrases": (_string_list, ...),
    "name": (_string, None),
}
_IMAP_KEYS: dict[str, tuple[Checker, Any]] = {
    "host": (_string, ...),
    "port": (_port, None),
    "ssl": (_boolean, False),
    "starttls": (_boolean, False),
    "ca_file": (_string, None),
    "user": (_string, ...),
    "password_file": (_string, None),
    "password_env": (_string, None),
    "folder": (_string, "INBOX"),
    "processed_folder": (_string, "Processed"),
    "quarantine_folder": (_string, "Quarantine"),
    "idle": (_boolean, True),
    "idle_seconds": (_positive_int, 25 * 60),
    "poll_seconds": (_positive_int, 60),
    "contract": (_string, None),
}
_ENGINEER_KEYS: dict[str, tuple[Checker, Any]] = {"email": (_email, ...), "name": (_string, "")}


def _section(raw: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    """Validate one table against the schema; returns cleaned values with defaults filled."""
    keys = _SCHEMA[dotted]
    return _validate_table(raw, keys, dotted)


def _validate_table(
    raw: Mapping[str, Any], keys: Mapping[str, tuple[Checker, Any]], dotted: str
) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{dotted}: expected a table")
    for key in raw:
        if key not in keys:
            raise ConfigError(f"{dotted}.{key}: unknown key")
    cleaned: dict[str, Any] = {}
    for key, (check, default) in keys.items():
        if key not in raw:
            if default is ...:
                raise ConfigError(f"{dotted}.{key}: required key is missing")
            cleaned[key] = None if default is None else check(default)
            continue
        try:
            cleaned[key] = check(raw[key])
        except ValueError as error:
            raise ConfigError(f"{dotted}.{key}: {error}") from None
    return cleaned


_ARRAYS = ("engineers", "contracts", "channels", "criticality", "plans")


def _split_tables(document: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten `[inbound.smtp]` into the key 'inbound.smtp' and refuse unknown sections."""
    tables: dict[str, Any] = {}
    for name, value in document.items():
        if name == "inbound":
            if not isinstance(value, Mapping):
                raise ConfigError("inbound: expected a table")
            for sub, subvalue in value.items():
                if sub == "imap":
                    tables["inbound.imap"] = subvalue
                    continue
                if f"inbound.{sub}" not in _SCHEMA:
                    raise ConfigError(f"inbound.{sub}: unknown section")
                tables[f"inbound.{sub}"] = subvalue
        elif name in _ARRAYS or name in _SCHEMA:
            tables[name] = value
        else:
            raise ConfigError(f"{name}: unknown section")
    return tables


def _imap_mailboxes(raw: Any, base_dir: Path) -> tuple[ImapMailboxConfig, ...]:
    """`[inbound.imap]` (one mailbox) or `[inbound.imap.NAME]` tables (several)."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigError("inbound.imap: expected a table")
    named = bool(raw) and all(isinstance(value, Mapping) for value in raw.values())
    tables = dict(raw) if named else {"default": raw}
    return tuple(_imap_mailbox(name, table, base_dir) for name, table in tables.items())


def _imap_mailbox(name: str, table: Any, base_dir: Path) -> ImapMailboxConfig:
    dotted = "inbound.imap" if name == "default" else f"inbound.imap.{name}"
    values = _validate_table(table, _IMAP_KEYS, dotted)
    if values["ssl"] and values["starttls"]:
        raise ConfigError(f"{dotted}.starttls: choose ssl (implicit TLS) or starttls, not both")
    if not values["password_file"] and not values["password_env"]:
        raise ConfigError(f"{dotted}.password_file: set password_file or password_env")
    password_file = values["password_file"]
    return ImapMailboxConfig(
        name=name,
        host=values["host"],
        port=values["port"] or (993 if values["ssl"] else 143),
        ssl=values["ssl"],
        starttls=values["starttls"],
        ca_file=_resolve(base_dir, values["ca_file"]) if values["ca_file"] else None,
        user=values["user"],
        password_file=_resolve(base_dir, password_file) if password_file else None,
        password_env=values["password_env"],
        folder=values["folder"],
        processed_folder=values["processed_folder"],
        quarantine_folder=values["quarantine_folder"],
        idle=values["idle"],
        idle_seconds=values["idle_seconds"],
        poll_seconds=values["poll_seconds"],
        contract=values["contract"],
    )


def _engineers(raw: Any) -> tuple[EngineerConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError("engineers: expected an array of tables ([[engineers]])")
    result = []
    for index, item in enumerate(raw):
        values = _validate_table(item, _ENGINEER_KEYS, f"engineers[{index}]")
        result.append(EngineerConfig(email=values["email"], name=values["name"]))
    return tuple(result)


def _array(raw: Any, name: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{name}: expected an array of tables ([[{name}]])")
    return raw


def _contracts(raw: Any) -> tuple[ContractConfig, ...]:
    contracts: list[ContractConfig] = []
    for index, item in enumerate(_array(raw, "contracts")):
        values = _validate_table(item, _CONTRACT_KEYS, f"contracts[{index}]")
        if any(contract.name == values["name"] for contract in contracts):
            raise ConfigError(f"contracts[{index}].name: {values['name']!r} is used twice")
        contracts.append(ContractConfig(**{**values, "addresses": frozenset(values["addresses"])}))
    return tuple(contracts)


def _channels(raw: Any) -> tuple[ChannelConfig, ...]:
    return tuple(
        ChannelConfig(**_validate_table(item, _CHANNEL_KEYS, f"channels[{index}]"))
        for index, item in enumerate(_array(raw, "channels"))
    )


def _criticality_rules(raw: Any) -> tuple[CriticalityRuleConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigError("criticality: expected a table with [[criticality.rules]]")
    for key in raw:
        if key != "rules":
            raise ConfigError(f"criticality.{key}: unknown key")
    rules = []
    for index, item in enumerate(_array(raw.get("rules"), "criticality.rules")):
        values = _validate_table(item, _RULE_KEYS, f"criticality.rules[{index}]")
        name = values["name"] or f"config rule {index + 1}"
        rules.append(CriticalityRuleConfig(values["level"], values["phrases"], name))
    return tuple(rules)


def _plans(raw: Any) -> tuple[PlanConfig, ...]:
    return tuple(
        PlanConfig(**_validate_table(item, _PLAN_KEYS, f"plans[{index}]"))
        for index, item in enumerate(_array(raw, "plans"))
    )


def _check_contract_names(
    contracts: tuple[ContractConfig, ...],
    channels: tuple[ChannelConfig, ...],
    imap: tuple[ImapMailboxConfig, ...],
    plans: tuple[PlanConfig, ...] = (),
) -> None:
    known = {contract.name for contract in contracts}
    named = [(f"channels[{i}].contract", c.contract) for i, c in enumerate(channels)]
    named += [(f"inbound.imap.{m.name}.contract", m.contract) for m in imap if m.contract]
    named += [(f"plans[{i}].contract", p.contract) for i, p in enumerate(plans) if p.contract]
    for key, name in named:
        if name not in known:
            raise ConfigError(f"{key}: no [[contracts]] entry is named {name!r}")


def _resolve(base_dir: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base_dir / candidate


def _resolve_url(base_dir: Path, url: str) -> str:
    """Make a relative `sqlite:///x.db` relative to the config folder, as every other path."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix:
        rest = url[len(prefix) :]
        if rest != ":memory:":
            return prefix + str(_resolve(base_dir, rest))
    return url


def _resolve_transport(base_dir: Path, transport: str) -> str:
    if transport.startswith("maildir:"):
        return "maildir:" + str(_resolve(base_dir, transport[len("maildir:") :]))
    return transport


def _listener(
    values: dict[str, Any], *, lmtp: bool, default_hostname: str
) -> SmtpInboundConfig | None:
    if not values["enabled"]:
        return None
    host, port = values["listen"]
    return SmtpInboundConfig(
        host, port, lmtp, values["max_message_mb"],
        hostname=values["hostname"] or default_hostname,
        max_sessions=values["max_sessions"],
        max_sessions_per_peer=values["max_sessions_per_peer"],
        idle_timeout_seconds=values["idle_timeout_seconds"],
        max_recipients=values["max_recipients"],
    )  # fmt: skip


def _web_listener(values: dict[str, Any]) -> WebInboundConfig | None:
    if not values["enabled"]:
        return None
    host, port = values["listen"]
    return WebInboundConfig(
        host, port, values["per_peer_per_minute"], values["per_email_per_hour"],
        values["max_request_mb"], tuple(values["trusted_proxies"]),
    )  # fmt: skip


def _telegram_bot(values: dict[str, Any], base_dir: Path) -> TelegramInboundConfig | None:
    if not values["enabled"]:
        return None
    if not values["token_file"]:
        raise ConfigError("inbound.telegram.token_file: set the file that holds the bot's token")
    if values["poll_seconds"] > MAX_TELEGRAM_POLL_SECONDS:
        raise ConfigError(
            f"inbound.telegram.poll_seconds: at most {MAX_TELEGRAM_POLL_SECONDS} (proxies "
            "between maild and the Bot API close longer requests)"
        )
    return TelegramInboundConfig(
        _resolve(base_dir, values["token_file"]), values["api_url"], values["poll_seconds"]
    )


def build_config(document: Mapping[str, Any], base_dir: Path, source: Path | None) -> Config:
    """Validate a parsed TOML document into a `Config`."""
    tables = _split_tables(document)
    values = {name: _section(tables.get(name, {}), name) for name in _SCHEMA}
    mailbox, outbound, smtp = values["mailbox"], values["outbound"], values["inbound.smtp"]
    from_header = outbound["from"] or f"{mailbox['display_name']} <{mailbox['address']}>"
    # A listener greets with its own name; without one, the support domain's (never "localhost").
    mail_domain = mailbox["address"].rpartition("@")[2]
    smtp_config = _listener(smtp, lmtp=False, default_hostname=mail_domain)
    lmtp_config = _listener(values["inbound.lmtp"], lmtp=True, default_hostname=mail_domain)
    imap = _imap_mailboxes(tables.get("inbound.imap"), base_dir)
    contracts, channels = _contracts(tables.get("contracts")), _channels(tables.get("channels"))
    plans = _plans(tables.get("plans"))
    _check_contract_names(contracts, channels, imap, plans)
    return Config(
        base_dir=base_dir,
        source_file=source,
        mailbox=MailboxConfig(
            mailbox["address"], mailbox["comment_address"], mailbox["display_name"]
        ),
        token_prefix=values["tokens"]["prefix"],
        database=DatabaseConfig(_resolve_url(base_dir, values["database"]["url"])),
        artifacts=ArtifactsConfig(
            _resolve(base_dir, values["artifacts"]["path"]),
            _resolve(base_dir, values["artifacts"]["key_file"]),
            values["artifacts"]["max_attachment_mb"],
            values["artifacts"]["max_message_mb"],
            values["artifacts"]["retention_days"],
            values["artifacts"]["max_parts"],
        ),
        outbound=OutboundConfig(
            _resolve_transport(base_dir, outbound["transport"]),
            from_header,
            outbound["max_attempts"],
            outbound["retry_seconds"],
        ),
        smtp=smtp_config,
        lmtp=lmtp_config,
        web=_web_listener(values["inbound.web"]),
        telegram=_telegram_bot(values["inbound.telegram"], base_dir),
        imap=imap,
        spool=SpoolConfig(_resolve(base_dir, values["spool"]["path"])),
        tickets=TicketsConfig(**values["tickets"]),
        guard=GuardConfig(**values["guard"]),
        engineers=_engineers(tables.get("engineers", [])),
        security=SecurityConfig(**values["security"]),
        notifications=NotificationsConfig(values["notifications"]["team_address"]),
        sla=SlaConfig(**values["sla"]),
        log_level=values["logging"]["level"],
        log_format=values["logging"]["format"],
        metrics_listen=values["metrics"]["listen"],
        calendar=CalendarConfig(
            timezone=values["calendar"]["timezone"],
            working_hours=values["calendar"]["working_hours"],
            lunch=values["calendar"]["lunch"],
            extra_file=(
                _resolve(base_dir, values["calendar"]["extra_file"])
                if values["calendar"]["extra_file"]
                else None
            ),
        ),
        contracts=contracts,
        channels=channels,
        criticality_rules=_criticality_rules(tables.get("criticality")),
        escalation=EscalationConfig(**values["escalation"]),
        cooperation=CooperationConfig(**values["cooperation"]),
        assignment_mode=values["assignment"]["mode"],
        plans=plans,
        reports=ReportsConfig(**values["reports"]),
        digest=DigestConfig(**values["digest"]),
        scheduler_seconds=values["scheduler"]["interval_seconds"],
    )


def load_config(path: str | Path | None) -> Config:
    """Load the file named by `path`, else by $MAILD_CONFIG, else the embedded defaults."""
    chosen = path or os.environ.get(ENV_CONFIG)
    if not chosen:
        return build_config({}, Path.cwd(), None)
    file = Path(chosen).expanduser().resolve()
    try:
        with file.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {file}: {error}") from None
    return build_config(document, file.parent, file)
