"""Typed configs of the ``dataset:`` and ``data:`` blocks."""

from __future__ import annotations

import dataclasses

from peftbench.errors import ConfigError

SUITES = ("vtab", "fgvc", "embedded")
NORMALIZE = ("backbone", "imagenet", "inception", "none")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclasses.dataclass
class DatasetConfig:
    """One task, from ``configs/dataset/<suite>/<name>.yaml``.

    Attributes:
        name: canonical task name (aliases resolve to it).
        suite: ``vtab``, ``fgvc`` or ``embedded``.
        num_classes: classes of the task.
        folder: ``<root>/vtab-1k/<folder>`` (VTAB, embedded) or ``<root>/<folder>`` (FGVC).
        group: VTAB group (``natural``, ``specialized``, ``structured``).
        image_dir: FGVC: folder (below ``folder``) that the json paths are relative to.
        display_name: the name papers print.
    """

    name: str
    suite: str
    num_classes: int
    folder: str
    group: str | None = None
    image_dir: str = ""
    display_name: str = ""

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ConfigError(f"dataset.suite={self.suite!r}; valid: {', '.join(SUITES)}")
        if self.num_classes < 2:
            raise ConfigError(f"dataset.num_classes must be >= 2, got {self.num_classes}")


@dataclasses.dataclass
class DataConfig:
    """The ``data:`` block: where data lives and the preprocessing choices (all recorded)."""

    root: str = "data"
    normalize: str = "backbone"
    interpolation: str = "bicubic"
    image_size: int = 224
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ConfigError(f"data.normalize={self.normalize!r}; valid choices: {', '.join(NORMALIZE)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"data.interpolation={self.interpolation!r}; valid choices: {', '.join(INTERPOLATIONS)}")
        if self.image_size < 1 or self.num_workers < 0:
            raise ConfigError("data.image_size must be >= 1 and data.num_workers >= 0")
