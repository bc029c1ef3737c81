"""Errors that mean the user's input or environment is wrong; the CLI prints them as one line."""


class CrysloopError(Exception):
    """Base class for errors a user can act on (bad input, missing weights, offline download, ...)."""


class InputError(CrysloopError, ValueError):
    """A file, row, element, option or condition that crysloop cannot use."""


class OfflineError(CrysloopError):
    """A download was needed and the network is unreachable."""
