"""``peftbench-search``: supernet -> evolutionary search -> final retraining of a searched method (NOAH, GLoRA).

Usage:
    peftbench-search method=noah|glora [search=<preset>] [search.<stage>.<key>=<value> ...] [peftbench-train overrides]

Presets (configs/search/): noah and glora hold the papers' stage settings (the default is the one named like the
method); quick runs the whole pipeline on the embedded default task in minutes on a CPU. Stages: supernet
(protocol=tune, method.arch=supernet), search (evolution on val200 under the parameter budget; writes
arch.yaml under <results_dir>/search/...), final (protocol=final on the chosen subnet; its result JSON gets a
`search` block with the architecture, counts and the cost of every stage). Relaunching redoes only what is missing.

Examples:
    peftbench-search method=noah search=quick
    peftbench-search method=glora search=quick trainer.device=cpu
    peftbench-search method=noah dataset=vtab/dtd backbone=vit_b16_in21k data.root=/data
    peftbench-search method=noah dataset=vtab/dtd search.evolution.param_limit=400000 search.supernet.epochs=100
"""

from __future__ import annotations

import sys

USAGE = __doc__


def main() -> None:
    """Console-script entry point."""
    from peftbench.apps.search import search
    from peftbench.cli import check_group_overrides, split_option
    from peftbench.errors import exit_on_user_error

    argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return
    preset, stage_overrides, rest = split_option(argv, "search")
    check_group_overrides(rest)
    exit_on_user_error(search, rest, preset, stage_overrides)


if __name__ == "__main__":
    main()
