"""The one exception tree of maild: callers decide retry or quarantine by type."""


class MaildError(Exception):
    """Base of every error maild raises on purpose."""


class ConfigError(MaildError):
    """The configuration is missing, malformed or refers to something that does not exist."""


class TransientError(MaildError):
    """Try again later: a peer is down, a lock is held, a disk is briefly full."""


class PermanentError(MaildError):
    """Retrying will not help: the input is bad and belongs in quarantine."""
