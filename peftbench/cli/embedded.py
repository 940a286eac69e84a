"""``peftbench-embedded``: the embedded mini-benchmark (methods x embedded tasks, fractal-pretrained vs random
init), then the leaderboard and the pretrained-vs-random table. ``--help`` lists the options."""

from __future__ import annotations

import sys

from peftbench.errors import exit_on_user_error


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (2 for bad arguments)."""
    from peftbench.apps.embedded import main as run

    return exit_on_user_error(run, argv, prog="peftbench-embedded")


def console() -> None:
    """Console-script wrapper that turns the return value into the exit code."""
    sys.exit(main())


if __name__ == "__main__":
    console()
