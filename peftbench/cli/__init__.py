"""Console entry points: thin wrappers, one library call each, behind one failure wrapper
(:func:`peftbench.errors.exit_on_user_error`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftbench.errors import UnknownNameError, exit_on_user_error
from peftbench.paths import config_dir, group_options

GROUPS = ("backbone", "method", "dataset", "trainer", "optim", "logger", "sweep", "experiment")


def hydra_config_path() -> str:
    """``configs/`` for ``@hydra.main`` (a missing folder ends the command with exit 2 and the fix)."""
    return str(exit_on_user_error(config_dir))


def check_group_overrides(argv: list[str]) -> None:
    """Reject ``group=option`` overrides naming an option that does not exist, listing the valid ones.

    Hydra lists the options of flat groups itself but not of nested ones (``dataset=vtab/...``), so
    every group is checked here first, with one message format. Sweep lists (``a,b``) are checked
    item by item; sweeper functions (``choice(...)``) are left to Hydra.
    """
    extra = _search_path(argv)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS or "(" in value or "[" in value or value in ("", "null"):
            continue
        valid = sorted({*group_options(key), *(o for root in extra for o in _options_in(root / key))})
        for option in value.split(","):
            if option not in valid:
                prefix = option.rsplit("/", 1)[0] + "/" if "/" in option else ""
                near = [v for v in valid if prefix and v.startswith(prefix)] or valid
                exit_on_user_error(_unknown_option, key, option, near)


def _search_path(argv: list[str]) -> list[Path]:
    """Folders a ``hydra.searchpath=[file://DIR,...]`` override adds to the config search path."""
    dirs: list[Path] = []
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key == "hydra.searchpath":
            dirs += [Path(p.strip().removeprefix("file://")) for p in value.strip("[]").split(",")
                     if p.strip().startswith("file://")]
    return dirs


def _options_in(folder: Path) -> list[str]:
    return [p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")] if folder.is_dir() else []


def _unknown_option(group: str, option: str, valid: list[str]) -> None:
    raise UnknownNameError(group, option, valid, f"(files in configs/{group}/; choose one with {group}=<name>)")


def split_option(argv: list[str], key: str) -> tuple[str | None, list[str], list[str]]:
    """Take ``key=value`` and ``key.<sub>=value`` arguments out of a command line (the rest goes to Hydra).

    Returns:
        The last ``key=`` value (None if absent), the ``<sub>=value`` items without the ``key.`` prefix, and
        the other arguments in order.
    """
    value, dotted, rest = None, [], []
    for arg in argv:
        name = arg.partition("=")[0]
        if name == key:
            value = arg.partition("=")[2]
        elif name.startswith(key + "."):
            dotted.append(arg[len(key) + 1 :])
        else:
            rest.append(arg)
    return value, dotted, rest


def console(hydra_main: Callable[[], Any]) -> None:
    """Console-script body: check group options (clear errors for typos), then run the Hydra app."""
    import sys

    check_group_overrides(sys.argv[1:])
    hydra_main()
