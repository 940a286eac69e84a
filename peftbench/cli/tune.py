"""``peftbench-tune``: tune every method on its own knobs with an equal budget (val200), select once per method x
task, run ``final`` for every seed with the selection, export the selections as recipes.

Examples:
    peftbench-tune method=lora,vpt_deep,adapter dataset=vtab/dtd data.root=/data backbone=vit_b16_in21k budget=20
    peftbench-tune search=grid budget=16 method=lora sweep=vtab1k seed=0,1,2 data.root=/data backbone=vit_b16_in21k
    peftbench-tune method=lora,adaptformer sweep=vtab1k data.root=/data hydra/launcher=slurm hydra.launcher.partition=gpu

Options (the rest are peftbench-train overrides; lists define the studies, seed=... the seeds):
    search=tpe|grid|random    seeded Optuna sampler (default tpe); grid visits the grid in a seeded random order
    budget=N                  trials per study (method x task), the same for every method (default 16)
    tune.name=NAME            folder <results>/tune/NAME/ (journal, launches, tuned.csv, experiment/NAME/*.yaml)
    tune.batch=N              new trials per study launched together each round (default 1)
    tune.seeds=[0]            tune-stage seeds (default: the command's seeds; the final stage runs those)
    tune.pruner=median|none   median pruning on per-epoch val accuracy (tune.pruner_startup=5,
                              tune.pruner_warmup_epochs=10, tune.report_every=1)
    tune.max_params=N         parameter budget: trainable parameters without the head
    tune.spaces=DIR           search space files (<method>.yaml, common.yaml) read before configs/tune/
    tune.sampler_seed=0  tune.startup_trials=10  tune.stop_after_trials=N (drill: stop like a kill, exit 3)
"""

from __future__ import annotations

import sys

USAGE = __doc__


def main() -> None:
    """Console-script entry point: ``search=``, ``budget=``, ``tune.<option>=`` plus ``peftbench-train`` overrides."""
    import yaml

    from peftbench.apps.tune import TuneOptions, tune
    from peftbench.cli import check_group_overrides, split_option
    from peftbench.config import build_config
    from peftbench.errors import ConfigError, exit_on_user_error, user_error_exit

    argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return
    options: dict[str, object] = {}
    for key in ("search", "budget"):
        value, dotted, argv = split_option(argv, key)
        if dotted:
            raise user_error_exit(ConfigError(f"peftbench-tune takes {key}=<value>, not {key}.{dotted[0]}"))
        if value is not None:
            options[key] = value
    value, dotted, argv = split_option(argv, "tune")
    if value is not None:
        raise user_error_exit(ConfigError(f"tune={value}: give peftbench-tune's options as tune.<option>=<value>"))
    for item in dotted:
        key, _, raw = item.partition("=")
        try:
            options[key] = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError:
            raise user_error_exit(ConfigError(f"tune.{item}: cannot read the value {raw!r}")) from None
    if isinstance(options.get("budget"), str):
        try:
            options["budget"] = int(str(options["budget"]))
        except ValueError:
            raise user_error_exit(ConfigError(f"budget={options['budget']}: give a number of trials")) from None
    opts = exit_on_user_error(build_config, TuneOptions, options, "peftbench-tune (search=, budget=, tune.<option>=)")
    check_group_overrides(argv)
    exit_on_user_error(tune, argv, opts)


if __name__ == "__main__":
    main()
