"""Typed configs from plain mappings: the one bridge between Hydra's DictConfig and typed code."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from peftbench.errors import ConfigError

T = TypeVar("T")


def to_plain(cfg: Any) -> Any:
    """A resolved, plain-Python copy of an OmegaConf node (or the value itself)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def build_config(config_cls: type[T], options: Mapping[str, Any], owner: str) -> T:
    """Build a config dataclass from a mapping, rejecting unknown keys with the valid ones.

    Args:
        config_cls: the dataclass.
        options: plain or OmegaConf mapping.
        owner: how the user names this block in messages (e.g. ``"method 'lora'"``, ``"trainer"``).
    """
    options = to_plain(options) or {}
    fields = {f.name for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(
            f"{owner} has no option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(fields)) or '(none)'}"
        )
    try:
        return config_cls(**dict(options))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid options for {owner}: {exc}") from None
