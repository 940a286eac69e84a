"""Option checks shared by the method configs: one message format (what, the valid values, the override)."""

from __future__ import annotations

from typing import Any

from peftbench.errors import ConfigError


def check_choice(method: str, option: str, value: Any, choices: dict[str, Any] | tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices`` (a tuple or a dict's keys)."""
    if value not in choices:
        raise ConfigError(
            f"{method} {option} {value!r} is not one of {', '.join(sorted(choices))}; "
            f"set method.{option}=<one of them>"
        )


def check_positive_int(method: str, option: str, value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer >= 1 (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{method} {option} must be an integer >= 1, got {value!r}; e.g. method.{option}=8")


def is_positive_number(value: Any) -> bool:
    """True for an int or float > 0 (bools rejected)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def check_dropout(method: str, value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{method} dropout must be in [0, 1), got {value!r}; e.g. method.dropout=0.1")
