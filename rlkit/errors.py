"""Errors a user can act on. The CLI prints them as one line and exits with status 2."""

import importlib
from types import ModuleType


class RlkitError(Exception):
    """Base for user-facing errors: the message names the file, key or sample and what was expected."""


class ConfigError(RlkitError):
    """A recipe, override or command-line argument is wrong."""


class DataError(RlkitError):
    """A data file or row cannot be used."""


class MissingExtraError(RlkitError):
    """A backend was selected whose optional dependencies are not installed."""

    def __init__(self, what: str, extra: str, module: str):
        super().__init__(f"{what} needs '{module}', which is not installed: pip install 'rlkit[{extra}]'")


def import_backend(module: str, what: str, extra: str) -> ModuleType:
    """Import an optional backend where a recipe selects it; missing, it is a MissingExtraError naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0]:
            raise  # installed, but something it imports is missing: its own message says what
        raise MissingExtraError(what, extra, module) from None
