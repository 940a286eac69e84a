"""Run every paper recipe (configs/experiment/) end to end on the embedded default, one epoch each, as given
(its precision, its fallback for a task it does not list), and write a table of what happened.

    python scripts/check_recipes.py [--out results/recipes] [--task dsprites_loc] [--recipes noah/lora ssf/ssf]

Each run is an ordinary peftbench-train run (in this process) under <out>/runs/; the table is <out>/embedded_check.md.
A recipe that refuses the task with a configuration error (the message a user gets) is listed as refused; any other
error is a failure, and the exit code is 1 when there is one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from pathlib import Path

import torch

from peftbench.apps.train import run
from peftbench.config import compose
from peftbench.errors import ConfigError
from peftbench.paths import group_options


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/recipes"))
    parser.add_argument("--task", default="dsprites_loc", help="embedded task (configs/dataset/embedded/)")
    parser.add_argument("--recipes", nargs="*", default=None, help="default: every recipe")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipes = args.recipes or group_options("experiment")
    rows, failures = [], 0
    for recipe in recipes:
        overrides = [f"experiment={recipe}", f"dataset=embedded/{args.task}", "trainer.epochs=1",
                     "trainer.num_threads=1", "trainer.progress=false", f"paths.results_dir={args.out}",
                     f"data.root={args.out / 'data'}", "on_existing=overwrite"]
        t0 = time.perf_counter()
        try:
            record = run(compose(overrides), command_line=overrides)
            status, acc = record.status, record.accuracy
            epochs = record.metrics.train.epochs_completed if record.metrics.train else 0
            precision = record.identity.precision
        except ConfigError as exc:  # the recipe refuses the task, as it would for a user: listed, not a failure
            status, acc, epochs, precision = f"refused: {exc}", None, 0, "?"
        except Exception as exc:  # noqa: BLE001 - every recipe is tried; the table names the failure
            status, acc, epochs, precision = f"error: {type(exc).__name__}: {exc}", None, 0, "?"
            failures += 1
        rows.append((recipe, status, precision, epochs, acc, time.perf_counter() - t0))
        print(f"{recipe}: {status} ({time.perf_counter() - t0:.1f} s)", flush=True)
    lines = [
        "# Every recipe end to end on the embedded default",
        "",
        f"- command: `python scripts/check_recipes.py --out {args.out} --task {args.task}`",
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}; machine: {platform.machine()}, "
        f"{platform.processor() or 'cpu'}, torch threads 1",
        "- every run: `dataset=embedded/<task> trainer.epochs=1` (cooldown epochs as the recipe states), the "
        "recipe's fallback values (the embedded tasks are in no source's table); accuracy after 1 epoch says only "
        "that the recipe trains, nothing about the method",
        "- `refused`: the recipe cannot run the embedded task and says so, with the message a user gets (e.g. NOAH's "
        "released subnets exist for the 19 VTAB-1k tasks only); not counted as a failure",
        "",
        "| recipe | status | precision | epochs | top-1 | seconds |",
        "|---|---|---|---|---|---|",
        *[f"| {r} | {s} | {p} | {e} | {'' if a is None else f'{a:.1f}'} | {t:.1f} |" for r, s, p, e, a, t in rows],
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embedded_check.md").write_text("\n".join(lines) + "\n")
    print(f"table: {args.out / 'embedded_check.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
