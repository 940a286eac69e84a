"""Hyperparameter search by the VTAB-1k protocol, as one command (``peftbench-tune``).

1. **tune**: a multirun with ``protocol=tune`` (train800 -> val200; FGVC train -> val) over the
   ``sweep=tune_grid`` preset (learning rate x weight decay) or the Optuna sweeper (``search=optuna``);
2. **select**: per combination of the user's other settings (method, dataset, seed, ...), the tune run
   with the highest validation accuracy among every finished tune run of that setting;
3. **final**: ``protocol=final`` (train800val200 -> test) with the selected learning rate and weight
   decay. Its result JSON gets a ``tuning`` block naming the tune runs it was selected from.

Finished runs are skipped by config hash as always, so relaunching an interrupted ``peftbench-tune``
only does what is missing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peftbench.config import compose
from peftbench.errors import ConfigError, PeftbenchError
from peftbench.records import (
    RESULT_FILE,
    RecordError,
    TuningBlock,
    config_hash,
    launched_result,
    read_record,
    run_dir,
    tune_key,
    write_record,
)

SEARCHES = ("grid", "optuna")
TUNED = ("trainer.lr", "trainer.weight_decay")  # what the search chooses


def tune_candidates(tune_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every tune run of ``tune_cfg``'s setting (any learning rate / weight decay), read from its JSON.

    Returns:
        One entry per run: ``run_dir``, ``config_hash``, ``status``, ``accuracy`` (val), the tuned values.
    """
    results_dir = Path(tune_cfg.get("paths", {}).get("results_dir", "results"))
    method_dir = run_dir(results_dir, tune_cfg, config_hash(tune_cfg)).parent
    key = tune_key(tune_cfg, TUNED)
    found = []
    for path in sorted(method_dir.glob(f"tune-seed{tune_cfg['seed']}-*/{RESULT_FILE}")):
        try:
            record = read_record(path)
        except (OSError, RecordError):
            continue
        cfg = record.provenance.config
        if record.identity.protocol != "tune" or tune_key(cfg, TUNED) != key:
            continue
        train = record.metrics.train
        found.append({
            "run_dir": str(path.parent),
            "config_hash": record.identity.config_hash,
            "status": record.status,
            "accuracy": train.accuracy if train else None,
            "accuracy_split": train.accuracy_split if train else None,
            "trainer.lr": cfg["trainer"]["lr"],
            "trainer.weight_decay": cfg["trainer"]["weight_decay"],
        })
    return found


def select(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The finished candidate with the highest validation accuracy (ties: smaller lr, then smaller wd)."""
    ok = [c for c in candidates if c["status"] == "success" and c["accuracy"] is not None]
    if not ok:
        raise PeftbenchError(
            f"no finished tune run to select from ({len(candidates)} found, none with status success); "
            "see their result.json files"
        )
    return sorted(ok, key=lambda c: (-c["accuracy"], c["trainer.lr"], c["trainer.weight_decay"]))[0]


def _launched(hydra_args: Sequence[str]) -> bool:
    """Whether ``hydra/launcher=...`` sends the runs elsewhere (another process, another machine)."""
    return any(o.lstrip("+~").startswith("hydra/launcher=") for o in hydra_args)


def _train(args: Sequence[str]) -> None:
    cmd = [sys.executable, "-m", "peftbench.cli.train", "-m", *args]
    print(f"[peftbench-tune] {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise PeftbenchError(f"the sweep stopped with exit code {proc.returncode} (its error is printed above); "
                             "fix it and relaunch the same command: finished runs are skipped")


def tune(overrides: Sequence[str], search: str = "grid") -> list[dict[str, Any]]:
    """Tune on train800/val200, select per setting on val accuracy, run ``final`` with the winner.

    Args:
        overrides: ``peftbench-train`` overrides; sweeps (``method=lora,ssf``, ``sweep=vtab1k``) define
            the settings a configuration is selected for; ``trainer.lr=...`` / ``trainer.weight_decay=...``
            lists replace the grid preset's values. ``hydra...`` overrides (launchers) go to every
            multirun.
        search: ``grid`` (``sweep=tune_grid``) or ``optuna`` (``sweep=tune_optuna``).

    Returns:
        The final runs' result JSONs, each with its ``tuning`` block.
    """
    from peftbench.sweeps.plan import expand

    if search not in SEARCHES:
        raise ConfigError(f"search={search!r}; valid choices: {', '.join(SEARCHES)}")
    hydra_args = [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    args = [o for o in overrides if o not in hydra_args]
    launch_args = [o for o in hydra_args if not o.lstrip("+~").startswith("hydra.sweeper")]  # not for final
    for o in args:
        if o.lstrip("+~").partition("=")[0] == "protocol":
            raise ConfigError(f"{o}: peftbench-tune runs protocol=tune, then protocol=final; drop it")
    presets = [o.partition("=")[2] for o in args if o.partition("=")[0] == "sweep"]
    rest = [o for o in args if o.partition("=")[0] != "sweep"]
    tune_sweep = f"sweep=[{','.join([*presets, f'tune_{search}'])}]"
    # the settings to select for: everything but the searched keys (trainer.lr=a,b on the command line
    # replaces the preset's values for the search)
    combos = expand([o for o in args if o.lstrip("+~").partition("=")[0] not in TUNED])

    if search == "grid":
        _train([*hydra_args, tune_sweep, *rest])
    else:  # Optuna would take a command-line list as a categorical dimension: one study per setting
        for combo in combos:
            _train([*hydra_args, f"sweep=tune_{search}", *[o for o in combo if o.partition("=")[0] != "sweep"]])

    finals = []
    for combo in combos:
        candidates = tune_candidates(compose([*combo, "protocol=tune"]))
        best = select(candidates)
        chosen = [f"{key}={best[key]}" for key in TUNED]
        print(f"[peftbench-tune] {' '.join(combo)}: selected {' '.join(chosen)} "
              f"(val top-1 {best['accuracy']} of {len(candidates)} tune runs)", flush=True)
        final_overrides = [*combo, "protocol=final", *chosen]
        _train([*launch_args, *final_overrides])
        final_cfg = compose(final_overrides)
        from peftbench.assemble import parse_spec

        # where that run wrote its record (a launcher's node resolves trainer.precision=auto by its own device)
        path = launched_result(final_cfg) if _launched(launch_args) else parse_spec(final_cfg).run_dir / RESULT_FILE
        record = read_record(path)
        record.tuning = TuningBlock(
            search=search,
            criterion=f"max top-1 on {best['accuracy_split']} over every finished tune run of this setting",
            selected={key: best[key] for key in TUNED},
            selected_run=best["run_dir"],
            selected_val_accuracy=best["accuracy"],
            candidates=candidates,
        )
        write_record(record, path)
        finals.append(record.to_dict())
        train = record.metrics.train
        print(f"[peftbench-tune] final: top-1 {train.accuracy if train else None} on "
              f"{train.accuracy_split if train else None}; result: {path}", flush=True)
    return finals
