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
    from peftbench.cli import check_group_overrides, reporting_user_errors, split_option
    from peftbench.sweeps.tune import tune

    argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return
    search, dotted, argv = split_option(argv, "search")
    if dotted:
        print(f"peftbench: error: peftbench-tune takes search=grid|optuna, not search.{dotted[0]}", file=sys.stderr)
        raise SystemExit(2)
    check_group_overrides(argv)
    reporting_user_errors(tune, argv, search or "grid")


if __name__ == "__main__":
    main()
