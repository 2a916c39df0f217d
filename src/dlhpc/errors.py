"""Errors a user can act on. The CLI prints ``str(err)`` on one line and exits with code 2."""


class DlhpcError(Exception):
    """A problem with the user's input or settings, not a bug in dlhpc."""

    exit_code = 2


class DataError(DlhpcError):
    """A data source that cannot be read: names the file and the problem."""


class ConfigError(DlhpcError):
    """A setting (flag, config file, run directory) that cannot be used."""
