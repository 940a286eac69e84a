"""The reproduction page: for every published reference row, the command that reproduces it, what differs from
its source, and ours beside the paper's once runs exist.

Written by ``peftbench-leaderboard`` as ``reproduction.md`` (with our numbers) and committed without runs as
``results/reference/REPRODUCE.md`` (a test regenerates it). Reads the reference table and the recipe files
(``configs/experiment/<recipe>.yaml``) as YAML; no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from peftbench.paths import config_dir

SWEEPS = {"vtab": "vtab1k", "fgvc": "fgvc"}  # configs/sweep/ presets over a suite's tasks


def read_recipe(name: str) -> dict[str, Any] | None:
    """The ``recipe:`` block of ``configs/experiment/<name>.yaml`` (None when the file does not exist)."""
    import yaml

    path = config_dir() / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return None
    block = (yaml.safe_load(path.read_text()) or {}).get("recipe") or {}
    return dict(block)


def command(row: pd.Series, recipe: dict[str, Any]) -> str:
    """The command that runs a reference row's recipe on every task of its suite, with its source's seeds."""
    seeds = recipe.get("seeds") or [0]
    parts = ["peftbench-train -m", f"experiment={row['recipe']}", f"sweep={SWEEPS[row['suite']]}",
             f"backbone={row['backbone']}", f"seed={','.join(str(s) for s in seeds)}", "data.root=<DIR>"]
    return " ".join(parts)


def _without_recipe(row: pd.Series, name: str) -> list[str]:
    """What the page says of a row no recipe reproduces."""
    if name:
        return [f"- recipe {name} is named, but configs/experiment/{name}.yaml does not exist"]
    notes = str(row.get("notes", "") or "").strip()
    if row.get("comparable", "yes") == "no" or not row.get("method"):
        why = "no peftbench method" if not row.get("method") else "not comparable"
        said = notes.removeprefix("not comparable: ").removeprefix("no peftbench method: ")
        return [f"- {why}: {said or 'see the row in the reference table'}"]
    options = row.get("method_options", "{}") or "{}"
    sweep = SWEEPS[row["suite"]]
    return [f"- no recipe (its source's training settings are not known): compared with runs of `method={row['method']}` "
            f"at its registered defaults with {options}, without a recipe",
            f"- command: `peftbench-train -m method={row['method']} sweep={sweep} backbone={row['backbone']} "
            "data.root=<DIR>`",
            *([f"- notes: {notes}"] if notes else [])]


def _fmt(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.2f}"


def _ours(versus: pd.DataFrame | None, row: pd.Series) -> list[str]:
    """Lines with our means beside the paper's for the runs matched to ``row`` (none: no runs yet)."""
    if versus is None or versus.empty:
        return []
    matched = versus[(versus["reference"] == row["display_name"]) & (versus["source"] == row["source"])]
    lines = []
    for (method, setting, recipe), part in matched.groupby(["method", "method_setting", "recipe"], sort=True):
        by_metric = part.set_index("metric")
        means = [m for m in ("mean_of_group_means", "mean_over_tasks") if m in by_metric.index]
        cells = ", ".join(f"{m}: ours {_fmt(by_metric.loc[m, 'ours'])} vs paper {_fmt(by_metric.loc[m, 'paper'])}"
                          for m in means)
        lines.append(f"- ours ({method}, setting {setting}, recipe {recipe or 'none'}, {part['reports'].iloc[0]}): {cells}")
    return lines


def reproduction_page(reference: pd.DataFrame, versus: dict[str, pd.DataFrame] | None = None) -> str:
    """The page as Markdown.

    Args:
        reference: :func:`peftbench.results.reference.load_reference`'s table.
        versus: suite -> the leaderboard's ``*_vs_reference`` table, when runs exist.
    """
    out = ["# Reproducing the published rows", "",
           "Generated from `results/reference/*.csv` and `configs/experiment/` (do not edit by hand). For every",
           "published row: the command that runs its recipe on all tasks of its suite with its source's seeds, the",
           "number its source printed (`last` epoch or `max_test` over evaluated epochs), and every known difference",
           "from the source. Our numbers appear once runs exist (`peftbench-leaderboard` writes this page with them).",
           ""]
    for suite, part in reference.groupby("suite", sort=False):
        out += [f"## {suite}", ""]
        for _, row in part.iterrows():
            name = row.get("recipe", "") or ""
            recipe = read_recipe(name) if name else None
            out.append(f"### {row['display_name']} ({row['backbone']})")
            out.append("")
            out.append(f"- published: {row['source']}; mean {_fmt(row.get('paper_mean'))}, "
                       f"params {row.get('params_M')}M")
            if recipe is None:
                out += _without_recipe(row, name) + [""]
                continue
            out.append(f"- recipe `{name}` ({recipe.get('source', 'source not stated')}); the source reports "
                       f"{row.get('reports') or recipe.get('reports', 'last')}, seeds {recipe.get('seeds', [0])}")
            out.append(f"- command: `{command(row, recipe)}`")
            deviations = recipe.get("deviations") or []
            out.append("- differences from the source: " + ("none known" if not deviations else ""))
            out += [f"  - {d}" for d in deviations]
            out += _ours((versus or {}).get(suite), row)
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def write_reproduction(path: str | Path, reference: pd.DataFrame,
                       versus: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write :func:`reproduction_page` atomically to ``path``."""
    from peftbench.atomic import write_text_atomic

    write_text_atomic(Path(path), reproduction_page(reference, versus))
    return Path(path)
