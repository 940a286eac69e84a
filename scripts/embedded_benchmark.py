"""Embedded mini-benchmark: PEFT methods on every embedded task, from the micro ViT and from random init.

Runs two Hydra multiruns of ``peftbench-train`` (methods x embedded tasks), one on ``vit_micro`` with its
shipped fractal-pretrained weights and one on the same architecture at random init (recorded as backbone
``vit_micro_scratch`` so the leaderboard keeps the rows apart), then ``peftbench-leaderboard``, and writes
``pretrained_vs_random.csv`` / ``.md`` (per method: mean accuracy over tasks and per group for both
inits and the margin) beside the leaderboard. Finished runs are skipped on a re-run (``on_existing=skip``),
so an interrupted benchmark resumes. Smoke scale: the numbers compare inits and methods on small proxies,
they are not VTAB-1k results.

Usage::

    python scripts/embedded_benchmark.py                       # the default methods, both inits
    python scripts/embedded_benchmark.py --methods linear,lora --inits pretrained
    python scripts/embedded_benchmark.py --all-methods         # every registered method (slow on CPU)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from peftbench.data.embedded import TASKS

REPO = Path(__file__).resolve().parent.parent
DEFAULT_METHODS = ("linear", "bitfit", "lora", "adaptformer", "vpt_shallow")
INITS = {
    "pretrained": ["backbone=vit_micro"],
    "random": ["backbone=vit_micro", "backbone.weights=none", "backbone.name=vit_micro_scratch"],
}
BACKBONE_OF = {"pretrained": "vit_micro", "random": "vit_micro_scratch"}


def _tool(name: str) -> str:
    """The console script next to this interpreter (the project's environment), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install peftbench (pip install -e .) first")
    return found


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated method names")
    parser.add_argument("--all-methods", action="store_true", help="every file in configs/method/")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated embedded task names")
    parser.add_argument("--inits", default="pretrained,random", help="pretrained and/or random")
    parser.add_argument("--results-dir", type=Path, default=Path("results/embedded_benchmark"))
    parser.add_argument("--data-root", default="data")
    parser.add_argument("overrides", nargs="*", help="extra peftbench-train overrides, e.g. seed=1")
    args = parser.parse_args(argv)

    methods = (
        sorted(p.stem for p in (REPO / "configs" / "method").glob("*.yaml"))
        if args.all_methods
        else args.methods.split(",")
    )
    tasks = args.tasks.split(",")
    unknown = sorted(set(tasks) - set(TASKS))
    inits = args.inits.split(",")
    bad_inits = sorted(set(inits) - set(INITS))
    if unknown or bad_inits:
        raise SystemExit(
            f"unknown task(s) {unknown} / init(s) {bad_inits}; tasks: {', '.join(TASKS)}; inits: {', '.join(INITS)}"
        )
    timings = {}
    for init in inits:
        start = time.time()
        cmd = [
            _tool("peftbench-train"), "-m", "trainer=embedded",
            f"method={','.join(methods)}",
            f"dataset={','.join('embedded/' + t for t in tasks)}",
            f"paths.results_dir={args.results_dir}", f"data.root={args.data_root}",
            *INITS[init], *args.overrides,
        ]
        print("[benchmark] " + " ".join(cmd[1:]), flush=True)
        code = subprocess.run(cmd, cwd=REPO).returncode
        timings[init] = time.time() - start
        print(f"[benchmark] {init}: {len(methods) * len(tasks)} runs, exit {code}, "
              f"{timings[init] / 60:.1f} min wall", flush=True)
        if code != 0:
            return code
    code = subprocess.run([_tool("peftbench-leaderboard"), "--results-dir", str(args.results_dir), "--no-plots"],
                          cwd=REPO).returncode
    table_path = REPO / args.results_dir / "leaderboard" / "embedded.csv"
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
        "wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[benchmark] tables under {table_path.parent}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
