"""Console entry points: thin wrappers, one library call each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import peftbench


def config_dir() -> str:
    """The repository's ``configs/`` folder (the package is installed in editable mode from the checkout)."""
    path = Path(peftbench.__file__).resolve().parents[1] / "configs"
    if not path.is_dir():
        raise SystemExit(
            f"peftbench: error: config folder {path} not found; install peftbench from its checkout "
            "with `pip install -e .` so configs/ sits beside the package"
        )
    return str(path)


GROUPS = ("backbone", "method", "dataset", "trainer", "optim", "logger", "experiment", "sweep")


def group_options(group: str) -> list[str]:
    """Options of a config group, e.g. ``vtab/cifar`` for ``dataset``."""
    root = Path(config_dir()) / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def check_group_overrides(argv: list[str]) -> None:
    """Reject ``group=option`` overrides naming an option that does not exist, listing the valid ones.

    Hydra lists the options of flat groups itself but not of nested ones (``dataset=vtab/...``), so
    every group is checked here first, with one message format. Sweep lists (``a,b``) are checked
    item by item; sweeper functions (``choice(...)``) are left to Hydra.
    """
    import sys

    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS or "(" in value or "[" in value or value in ("", "null"):
            continue
        valid = group_options(key)
        for option in value.split(","):
            if option not in valid:
                prefix = option.rsplit("/", 1)[0] + "/" if "/" in option else ""
                near = [v for v in valid if prefix and v.startswith(prefix)] or valid
                print(
                    f"peftbench: error: unknown {key} {option!r}; valid choices: {', '.join(near)}"
                    f"\n(files in configs/{key}/; choose one with {key}=<name>)",
                    file=sys.stderr,
                )
                raise SystemExit(2)


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


def reporting_user_errors(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn``; a :class:`~peftbench.errors.PeftbenchError` becomes one message on stderr and exit 2."""
    from peftbench.errors import PeftbenchError
    from peftbench.run import user_error_exit

    try:
        return fn(*args)
    except PeftbenchError as exc:
        raise user_error_exit(exc) from None


def console(hydra_main: Callable[[], Any]) -> None:
    """Console-script body: check group options (clear errors for typos), then run the Hydra app."""
    import sys

    check_group_overrides(sys.argv[1:])
    hydra_main()
