"""Embedded mini-benchmark: PEFT methods on every embedded task, from the micro ViT and from random init.

Runs two Hydra multiruns of ``peftbench-train`` (methods x embedded tasks), one on ``vit_micro`` with its
shipped fractal-pretrained weights and one on the same architecture at random init (recorded as backbone
``vit_micro_scratch`` so the leaderboard keeps the rows apart), then ``peftbench-leaderboard``, and writes
``pretrained_vs_random.csv`` / ``.md`` (per method: mean accuracy over tasks and per group for both
inits and the margin) beside the leaderboard. Finished runs are skipped on a re-run (``on_existing=skip``),
so an interrupted benchmark resumes. Smoke scale: the numbers compare inits and methods on small proxies,
they are not VTAB-1k results.

Usage (``peftbench-embedded``, or ``python scripts/embedded_benchmark.py``, which runs it from the checkout;
relative paths are taken from the current folder)::

    peftbench-embedded                       # the default methods, both inits
    peftbench-embedded --methods linear,lora --inits pretrained
    peftbench-embedded --all-methods --inits pretrained --jobs 2   # every method config, 2 cores

Prompt lengths: VPT's prompts join the token sequence, and the lengths of the method YAMLs were chosen for
ViT-B/16's 196 patch tokens (VPT-shallow p = 100, VPT-deep p = 50, about 0.5 and 0.25 prompts per patch). On
the micro ViT's 16 patches those lengths make the sequence 4-7x longer (VPT's longest, p = 200 on 196
patches, doubles it), and the VPT runs then take a third of the all-methods sweep's time. By default the
benchmark therefore runs them at the same prompts-per-patch ratio (``PROMPT_OVERRIDES``: p = 8 shallow, 4
deep, also inside the ``compose`` preset), recorded in every result's method options; ``--prompt-lengths
yaml`` keeps the YAML lengths. Prefix tuning's prefixes extend only the keys and values, so its lengths are
kept.

``--jobs N`` splits the methods into N groups that run concurrently (one CPU thread each with
``trainer=embedded``; a group runs its methods in one multirun, plus one per method with its own
overrides), so a 2-core machine trains two runs at a time. The groups are balanced by each method's
estimated cost (a few training steps on the micro ViT timed before the sweep, times the steps of its runs,
plus a fixed overhead per run and a multirun start for a method launched apart; longest first). The wall
time of each init goes into ``pretrained_vs_random.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from peftbench.data.embedded import TASKS
from peftbench.errors import ConfigError
from peftbench.paths import config_dir

DEFAULT_METHODS = ("linear", "bitfit", "lora", "adaptformer", "vpt_shallow")
INITS = {
    "pretrained": ["backbone=vit_micro"],
    "random": ["backbone=vit_micro", "backbone.weights=none", "backbone.name=vit_micro_scratch"],
}
BACKBONE_OF = {"pretrained": "vit_micro", "random": "vit_micro_scratch"}
# Patch tokens of ViT-B/16 at 224 px (the backbone the YAML prompt lengths were chosen for) and of the micro ViT.
REFERENCE_PATCHES, MICRO_PATCHES = 196, 16


def scaled_length(length: int) -> int:
    """A prompt length at the micro ViT's patch count with ViT-B/16's prompts-per-patch ratio (at least 1)."""
    return max(1, round(length * MICRO_PATCHES / REFERENCE_PATCHES))


# Per method config: the overrides that run its prompt tokens at scaled_length() of its YAML length
# (100 -> 8, 50 -> 4). The compose preset's third component is VPT-deep at its default length (50).
PROMPT_OVERRIDES = {
    "vpt_shallow": [f"method.length={scaled_length(100)}"],
    "vpt_deep": [f"method.length={scaled_length(50)}"],
    "compose": [f"+method.components.2.options.length={scaled_length(50)}"],
}
PROMPT_LENGTHS = ("scaled", "yaml")
TRAIN_IMAGES = 1000  # train800val200: what the final protocol trains on
# Measured on 2026-12-02: start-up of one more peftbench-train multirun (interpreter, imports, Hydra, decoding
# each task once), which a method with its own overrides costs its group.
MULTIRUN_START_S = 20.0
# ... and the part of a run that is not training steps (Hydra job set-up, model build, evaluation, result files)
RUN_OVERHEAD_S = 1.2


def _tool(name: str) -> str:
    """The console script next to this interpreter (the project's environment), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} not found: install peftbench (pip install -e .) first")
    return found


def all_method_configs() -> list[str]:
    """Every file in ``configs/method/`` that runs on the embedded tasks as it is.

    Left out, with a line saying so: configs whose ``arch`` is ``published`` (NOAH's released subnets exist for
    VTAB-1k tasks only); their embedded runs come from ``peftbench-search ... search=quick``.
    """
    import yaml

    names = []
    for path in sorted((config_dir() / "method").glob("*.yaml")):
        if (yaml.safe_load(path.read_text()) or {}).get("arch") == "published":
            print(f"[benchmark] {path.stem}: left out (its default is a published VTAB-1k architecture); search it "
                  f"on an embedded task with: peftbench-search method={path.stem} search=quick dataset=embedded/<task>")
            continue
        names.append(path.stem)
    return names


def step_costs(methods: list[str], overrides: list[str],
               per_method: dict[str, list[str]] | None = None) -> dict[str, float]:
    """Seconds per training step of each method on the embedded backbone (median of 3 steps after one warm-up).

    ``per_method`` adds overrides for single methods (the prompt lengths), as their runs get them.
    """
    import statistics

    import torch

    from peftbench.assemble import build_model, make_method, parse_spec
    from peftbench.config import compose

    torch.set_num_threads(1)
    costs = {}
    for name in methods:
        extra = (per_method or {}).get(name, [])
        args = [f"method={name}", *overrides, *extra]
        spec = parse_spec(compose(args), command_line=args)
        size = spec.backbone.img_size
        method = make_method(spec.method, spec.dataset.name, spec.dataset.suite)
        model = build_model(spec.backbone, method, 16, weights=False).model
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3)
        x, y = torch.randn(32, 3, size, size), torch.randint(0, 16, (32,))
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        costs[name] = statistics.median(times[1:])
    return costs


def pregenerate(tasks: list[str], data_root: Path) -> None:
    """Write the embedded tasks into ``data_root`` (a no-op for complete copies)."""
    import yaml

    from peftbench.data.embedded import ensure_embedded

    for task in tasks:
        folder = yaml.safe_load((config_dir() / "dataset" / "embedded" / f"{task}.yaml").read_text())["folder"]
        ensure_embedded(task, data_root / "vtab-1k" / folder)


def sweep_seconds(costs: dict[str, float], overrides: list[str], per_method: dict[str, list[str]],
                  n_tasks: int) -> dict[str, float]:
    """Each method's estimated share of a sweep: step cost x steps of its runs plus a fixed overhead per run,
    plus a multirun start when it has its own overrides (:func:`group_commands` launches it apart)."""
    import math

    from peftbench.config import compose

    trainer = compose(["trainer=embedded", *overrides])["trainer"]
    steps = int(trainer["epochs"]) * math.ceil(TRAIN_IMAGES / int(trainer["batch_size"])) * n_tasks
    return {m: c * steps + RUN_OVERHEAD_S * n_tasks + (MULTIRUN_START_S if per_method.get(m) else 0.0)
            for m, c in costs.items()}


def balanced_groups(costs: dict[str, float], jobs: int) -> list[list[str]]:
    """Longest-processing-time-first partition of the methods into ``jobs`` groups of similar total cost."""
    groups: list[list[str]] = [[] for _ in range(min(jobs, len(costs)))]
    loads = [0.0] * len(groups)
    for name in sorted(costs, key=lambda n: (-costs[n], n)):
        k = loads.index(min(loads))
        groups[k].append(name)
        loads[k] += costs[name]
    return [sorted(g) for g in groups]


def group_commands(group: list[str], per_method: dict[str, list[str]], common: list[str], sweep_dir: str) -> list[
        list[str]]:
    """The ``peftbench-train -m`` argument lists one group runs one after the other.

    Methods without overrides share one multirun; each method with its own overrides (``per_method``) gets
    its own, since a multirun applies the same overrides to every method it sweeps.
    """
    plain = [m for m in group if not per_method.get(m)]
    units = ([(plain, [])] if plain else []) + [([m], per_method[m]) for m in group if per_method.get(m)]
    return [
        ["-m", "trainer=embedded", f"method={','.join(methods)}", *common, *extra,
         # one sweep folder per multirun (the default is named after the second it starts)
         f"hydra.sweep.dir={sweep_dir}-{j}"]
        for j, (methods, extra) in enumerate(units)
    ]


def run_in_turn(commands: list[list[str]]) -> int:
    """Run ``peftbench-train`` with each argument list in order; stop at the first failure (its exit code)."""
    for cmd in commands:
        print("[benchmark] peftbench-train " + " ".join(cmd), flush=True)
        code = subprocess.run([_tool("peftbench-train"), *cmd]).returncode
        if code:
            return code
    return 0


def compare(table: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Per method: mean accuracy over tasks and per group for both inits, and pretrained - random.

    Args:
        table: the leaderboard's ``embedded.csv``.
        tasks: the task columns to average.

    Returns:
        One row per method with ``<init>_mean``, ``<init>_<group>`` and ``margin_*`` columns.
    """
    groups: dict[str, list[str]] = {}
    for t in tasks:
        groups.setdefault(TASKS[t].group, []).append(t)
    rows = []
    for method, part in table.groupby("method", sort=False):
        row: dict[str, object] = {"method": method}
        for init, backbone in BACKBONE_OF.items():
            sel = part[part["backbone"] == backbone]
            if sel.empty:
                continue
            acc = sel.iloc[0]
            row[f"{init}_mean"] = float(acc[tasks].mean())
            for group, members in groups.items():
                row[f"{init}_{group}"] = float(acc[members].mean())
        if "pretrained_mean" in row and "random_mean" in row:
            row["margin_mean"] = row["pretrained_mean"] - row["random_mean"]
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (bad arguments raise :class:`~peftbench.errors.ConfigError`)."""
    parser = argparse.ArgumentParser(prog="peftbench-embedded", description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated method names")
    parser.add_argument("--all-methods", action="store_true",
                        help="every file in configs/method/ that runs on these tasks as it is")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated embedded task names")
    parser.add_argument("--inits", default="pretrained,random", help="pretrained and/or random")
    parser.add_argument("--results-dir", type=Path, default=Path("results/embedded_benchmark"))
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--jobs", type=int, default=1, help="concurrent multiruns (methods split between them)")
    parser.add_argument("--prompt-lengths", choices=PROMPT_LENGTHS, default="scaled",
                        help="scaled: VPT prompt lengths at ViT-B/16's prompts per patch (default); yaml: the "
                             "method YAMLs' lengths")
    parser.add_argument("overrides", nargs="*", help="extra peftbench-train overrides, e.g. seed=1")
    args = parser.parse_args(argv)

    methods = all_method_configs() if args.all_methods else args.methods.split(",")
    tasks = args.tasks.split(",")
    unknown = sorted(set(tasks) - set(TASKS))
    inits = args.inits.split(",")
    bad_inits = sorted(set(inits) - set(INITS))
    if unknown or bad_inits:
        raise ConfigError(
            f"unknown task(s) {unknown} / init(s) {bad_inits}; tasks: {', '.join(TASKS)}; inits: {', '.join(INITS)}"
        )
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    per_method = {m: o for m, o in PROMPT_OVERRIDES.items() if m in methods} if args.prompt_lengths == "scaled" else {}
    for m, o in per_method.items():
        print(f"[benchmark] {m}: {' '.join(o)} (prompt length at ViT-B/16's prompts per patch; "
              "--prompt-lengths yaml keeps the YAML length)", flush=True)
    script_start = time.time()
    if args.jobs == 1:
        groups = [methods]
    else:
        pregenerate(tasks, Path(args.data_root))  # once, before concurrent runs would each write them
        user = [o for o in args.overrides if "=" in o]
        costs = step_costs(methods, list(INITS["pretrained"]) + user, per_method)
        loads = sweep_seconds(costs, user, per_method, len(tasks))
        groups = balanced_groups(loads, args.jobs)
        for k, g in enumerate(groups):
            print(f"[benchmark] group {k}: about {sum(loads[m] for m in g) / 60:.1f} min (estimate): {', '.join(g)}",
                  flush=True)
    timings = {}
    for init in inits:
        start = time.time()
        common = [f"dataset={','.join('embedded/' + t for t in tasks)}", f"paths.results_dir={args.results_dir}",
                  f"data.root={args.data_root}", *INITS[init], *args.overrides]
        commands = [group_commands(g, per_method, common, f"{args.results_dir}/logs/hydra/embedded-{init}-{k}-of-"
                                   f"{len(groups)}") for k, g in enumerate(groups)]
        with ThreadPoolExecutor(max_workers=len(groups)) as pool:
            codes = list(pool.map(run_in_turn, commands))
        code = max(codes)
        timings[init] = time.time() - start
        print(f"[benchmark] {init}: {len(methods) * len(tasks)} runs in {len(groups)} concurrent group(s), "
              f"exit {code}, {timings[init] / 60:.1f} min wall", flush=True)
        if code != 0:
            return code
    total = time.time() - script_start
    code = subprocess.run([_tool("peftbench-leaderboard"), "--results-dir", str(args.results_dir), "--no-plots"],
                          ).returncode
    table_path = args.results_dir / "leaderboard" / "embedded.csv"
    if code != 0 or not table_path.is_file():
        return code or 1
    table = pd.read_csv(table_path)
    present = [t for t in tasks if t in table.columns]
    result = compare(table[table["method"].isin(methods)], present)
    out = table_path.parent / "pretrained_vs_random"
    result.to_csv(out.with_suffix(".csv"), index=False)
    lines = [
        "| " + " | ".join(result.columns) + " |",
        "|" + "---|" * len(result.columns),
        *("| " + " | ".join(v if isinstance(v, str) else f"{v:.1f}" for v in r) + " |"
          for r in result.itertuples(index=False)),
        "",
        f"wall time ({len(methods)} methods x {len(tasks)} tasks per init, {len(groups)} concurrent group(s), "
        f"{os.cpu_count()} logical CPUs, prompt lengths {args.prompt_lengths}): "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
        + f"; whole script (task generation and step timing included) {total / 60:.1f} min",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[benchmark] tables under {table_path.parent}/")
    return 0


