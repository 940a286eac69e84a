"""Where peftbench's own files are: the package, the ``configs/`` folder, package-relative weights files.

The lowest layer (no torch): every other module that needs one of these paths asks here.
"""

from __future__ import annotations

from pathlib import Path

from peftbench.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE_PREFIX = "package:"  # backbone.weights relative to the installed peftbench package
WEIGHTS_NOT_FILES = ("hub", "none")


def config_dir() -> Path:
    """The repository's ``configs/`` folder (peftbench is installed in editable mode from its checkout).

    Raises:
        ConfigError: the folder is not beside the package (a non-editable install).
    """
    path = PACKAGE_DIR.parent / "configs"
    if not path.is_dir():
        raise ConfigError(
            f"config folder {path} not found; install peftbench from its checkout with `pip install -e .` "
            "so configs/ sits beside the package"
        )
    return path


def group_options(group: str) -> list[str]:
    """Options of a config group, e.g. ``vtab/cifar`` for ``dataset`` (empty for a group with no folder)."""
    root = config_dir() / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def config_groups() -> list[str]:
    """The config groups: the folders of ``configs/``."""
    return sorted(p.name for p in config_dir().iterdir() if p.is_dir())


def suite_tasks() -> dict[str, list[str]]:
    """suite -> its canonical task names (the ``name:`` of ``configs/dataset/<suite>/*.yaml``; alias files, which
    only point at another file, have none): the names per-task tables use."""
    import re

    tasks: dict[str, list[str]] = {}
    for option in group_options("dataset"):
        suite, _, _ = option.partition("/")
        found = re.search(r"^name:\s*(\S+)", (config_dir() / "dataset" / f"{option}.yaml").read_text(), re.M)
        if found:
            tasks.setdefault(suite, []).append(found.group(1))
    return tasks


def weights_path(weights: str) -> Path:
    """The file a local ``backbone.weights`` names; ``package:<path>`` is relative to the peftbench package."""
    if weights.startswith(PACKAGE_PREFIX):
        return PACKAGE_DIR / weights.removeprefix(PACKAGE_PREFIX)
    return Path(weights).expanduser()
