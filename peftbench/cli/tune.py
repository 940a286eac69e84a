"""``peftbench-tune``: tune on train800/val200, select on val accuracy, run ``final`` with the winner.

Examples:
    peftbench-tune method=lora dataset=vtab/dtd data.root=/data backbone=vit_b16_in21k
    peftbench-tune search=optuna method=lora dataset=vtab/dtd data.root=/data
    peftbench-tune method=lora,ssf sweep=vtab1k data.root=/data hydra/launcher=slurm hydra.launcher.partition=gpu
"""

from __future__ import annotations

import sys

USAGE = __doc__


def main() -> None:
    """Console-script entry point: ``[search=grid|optuna]`` plus ``peftbench-train`` overrides."""
    from peftbench.apps.tune import tune
    from peftbench.cli import check_group_overrides, split_option
    from peftbench.errors import ConfigError, exit_on_user_error, user_error_exit

    argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return
    search, dotted, argv = split_option(argv, "search")
    if dotted:
        raise user_error_exit(ConfigError(f"peftbench-tune takes search=grid|optuna, not search.{dotted[0]}"))
    check_group_overrides(argv)
    exit_on_user_error(tune, argv, search or "grid")


if __name__ == "__main__":
    main()
