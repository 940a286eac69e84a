"""Exceptions for mistakes a user can fix.

Every subclass of :class:`PeftbenchError` is caught by the command-line entry points, printed as a
one-paragraph message (what was wrong, the valid choices, how to fix it) and turned into exit code 2,
without a Python traceback. Programming errors keep their tracebacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class PeftbenchError(Exception):
    """Base class for errors caused by user input (configs, files, data)."""


class UnknownNameError(PeftbenchError, KeyError):
    """A name (method, backbone, dataset, option) that is not registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str], hint: str = "") -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        msg = f"unknown {kind} {name!r}; valid choices: {', '.join(self.valid)}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ConfigError(PeftbenchError, ValueError):
    """A config value that is out of range or of the wrong shape."""


class DataError(PeftbenchError):
    """Missing or malformed dataset files (roots, list files, json splits, images)."""


class CheckpointError(PeftbenchError):
    """A weights file that is missing, unreadable, or does not fit the backbone."""


class MethodNotSupportedError(PeftbenchError):
    """A PEFT method applied to a backbone it is not defined for."""


class RunExistsError(PeftbenchError):
    """A finished run already exists at the target location."""


def user_error_exit(exc: PeftbenchError, prog: str = "peftbench") -> SystemExit:
    """Print a user error as ``<prog>: error: <message>`` on stderr; return the SystemExit (code 2) to raise."""
    import sys

    print(f"{prog}: error: {exc}", file=sys.stderr)
    return SystemExit(2)


def exit_on_user_error(fn: Callable[..., T], *args: Any, prog: str = "peftbench", **kwargs: Any) -> T:
    """The failure wrapper of every console script: call ``fn``; a :class:`PeftbenchError` becomes one message
    on stderr and exit code 2, without a traceback (programming errors keep theirs)."""
    try:
        return fn(*args, **kwargs)
    except PeftbenchError as exc:
        raise user_error_exit(exc, prog) from None
