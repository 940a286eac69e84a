"""Typed configs from plain mappings: the one bridge between Hydra's DictConfig and typed code."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
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


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> dict[str, Any]:
    """Compose ``configs/<config_name>.yaml`` with command-line ``overrides``; the resolved plain config
    without its ``hydra`` block (what a run of that command records as its ``config``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from peftbench.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    plain = to_plain(cfg)
    plain.pop("hydra", None)
    return plain
