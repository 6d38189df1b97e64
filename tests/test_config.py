"""Config: the example works as it is; unknown keys and bad values are refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from maild.cli import main
from maild.config import load_config
from maild.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "maild.example.toml"


def test_example_config_loads_with_paths_relative_to_its_folder():
    config = load_config(EXAMPLE)
    assert config.mailbox.address == "info@sis.ru"
    assert config.mailbox.comment_address == "info+comment@sis.ru"
    assert config.token_prefix == "SIS"  # noqa: S105 - a subject token, not a password
    assert config.artifacts.path == EXAMPLE.parent / "../var/artifacts"
    assert config.database.url == f"sqlite:///{EXAMPLE.parent / '../var/maild.db'}"
    assert config.outbound.transport == f"maildir:{EXAMPLE.parent / '../var/outbox'}"
    assert config.smtp is not None
    assert (config.smtp.host, config.smtp.port) == ("127.0.0.1", 2525)
    assert [e.email for e in config.engineers] == ["ivanov@sis.ru", "petrova@sis.ru"]


def test_embedded_defaults_without_a_file(monkeypatch, tmp_path):
    monkeypatch.delenv("MAILD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.database.url == f"sqlite:///{tmp_path / 'var/maild.db'}"
    assert config.outbound.transport == f"maildir:{tmp_path / 'var/outbox'}"
    assert config.outbound.from_header == "SIS Support <info@sis.ru>"


def test_environment_variable_names_the_file(monkeypatch):
    monkeypatch.setenv("MAILD_CONFIG", str(EXAMPLE))
    assert load_config(None).source_file == EXAMPLE.resolve()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[mailbox]\naddres = 'x@y.ru'\n", "mailbox.addres: unknown key"),
        (
            "[mailbox]\naddress = 'not-an-email'\n",
            "mailbox.address: 'not-an-email' is not an email address",
        ),
        ("[tokens]\nprefix = '#1'\n", "tokens.prefix: expected 1-16 letters"),
        (
            "[outbound]\ntransport = 'ftp://x'\n",
            "outbound.transport: expected maildir:PATH or smtp://host:port",
        ),
        ("[inbound.smtp]\nlisten = '127.0.0.1'\n", "inbound.smtp.listen: expected HOST:PORT"),
        ("[inbound.pop3]\nhost = 'x'\n", "inbound.pop3: unknown section"),
        ("[guard]\nautoreply_limit = -1\n", "guard.autoreply_limit: expected an integer >= 0"),
        ("[tickets]\nlanguage = 'de'\n", "tickets.language: expected one of ru, en"),
        ("[[engineers]]\nname = 'No Mail'\n", "engineers[0].email: required key is missing"),
        ("[tickets]\ntimezone = 'Moscow'\n", "tickets.timezone: 'Moscow' is not a time zone"),
        ("[notifications]\nteam_address = 'team'\n", "notifications.team_address: 'team' is not"),
        (
            "[sla]\nfirst_response_hours = { critical = 1, high = 4, normal = 8 }\n",
            "sla.first_response_hours: missing criticality 'low'",
        ),
        (
            "[sla]\nresolution_hours = { critical = 1, high = 4, normal = 8, low = 0 }\n",
            "sla.resolution_hours: low: expected a positive number of hours",
        ),
        (
            "[sla]\nresolution_hours = { urgent = 1 }\n",
            "sla.resolution_hours: unknown criticality 'urgent'",
        ),
        ("[[engineers]]\nemail = 'a@sis.ru'\nrole = 'x'\n", "engineers[0].role: unknown key"),
        (
            "[security]\ntrusted_relays = ['10.0.0.0/8', 'bad host!']\n",
            "security.trusted_relays: 'bad host!'",
        ),
        ("[mailbox\n", "config file"),
        ("colour = 1\n", "colour: unknown section"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(tmp_path, toml, message):
    path = tmp_path / "maild.toml"
    path.write_text(toml)
    with pytest.raises(
        ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
    ):
        load_config(path)


def test_cli_reports_config_error_and_exits_2(tmp_path, capsys):
    path = tmp_path / "maild.toml"
    path.write_text("[database]\nurl = 5\n")
    assert main(["tickets", "list", "--config", str(path)]) == 2
    assert "database.url: expected a non-empty string" in capsys.readouterr().err


def test_missing_config_file_is_a_clear_error(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.toml"), "init"]) == 2
    assert "does not exist" in capsys.readouterr().err
