"""``summary.md``: one Markdown page with the headline tables, the comparison with the papers, the
Pareto fronts, the figures and what is still missing, all read from the tables the leaderboard wrote.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd

from peftbench.results.reference import SUITE_TASKS

HEADLINE = ["backbone", "method", "method_setting", "family", "tasks_present", "mean_rank", "natural", "specialized",
            "structured", "mean_of_group_means", "mean_over_tasks", "params_M", "ppt", "peak_train_mem_mb", "train_img_s"]


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (only ``columns`` that exist, in that order).

    Args:
        frame: any table.
        columns: the columns to show (default: all).

    Returns:
        The table as Markdown text, or ``"(none)"`` for an empty frame.
    """
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    if frame.empty or not cols:
        return "(none)\n"
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame[cols].itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _versus_summary(versus: pd.DataFrame) -> pd.DataFrame:
    """Per our row and reference: ours, paper and delta on the means and groups only (not per task)."""
    if versus.empty:
        return versus
    keep = versus[versus["metric"].isin(["natural", "specialized", "structured", "mean_of_group_means",
                                          "mean_over_tasks", "ppt"]) | (versus["reference_status"] != "matched")]
    return keep[["backbone", "method", "method_setting", "reference", "metric", "ours", "paper", "delta",
                 "reference_status"]]


def write_summary(out: Path, tables: dict[str, tuple[str, pd.DataFrame]], reference: pd.DataFrame,
                  figures: dict[str, Path], problems: list[dict[str, str]], valid_runs: int) -> Path:
    """Write ``<out>/summary.md`` and return its path.

    Args:
        out: the leaderboard folder (holding the CSVs and ``plots/``).
        tables: ``{table name: (suite, suite table)}``.
        reference: published numbers.
        figures: ``{"plot:<name>": png path}`` from :func:`peftbench.results.plots.write_plots`.
        problems: the rows of ``problems.csv``.
        valid_runs: readable, finished run JSONs.

    Returns:
        The path of ``summary.md``.
    """
    counts = Counter(p["status"] for p in problems)
    parts = ["# peftbench leaderboard\n",
             f"{valid_runs} finished run JSON(s); " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
             + (" (listed in problems.csv)" if counts else "no problems") + ".\n",
             "Accuracies are top-1 (%) after the last epoch, means over seeds. `mean_over_tasks` is the plain "
             "mean over the suite's tasks (V-PETL Bench's Mean); `mean_of_group_means` averages the Natural / "
             "Specialized / Structured means (older papers' Mean). `ppt` = mean_over_tasks/100 x "
             "exp(-log10(params/10^7 + 1)), params without the head (V-PETL Bench). Rows on different "
             "backbones are never averaged together.\n"]
    for name, (suite, table) in tables.items():
        parts.append(f"## {name}\n")
        parts.append(markdown_table(table, HEADLINE if suite in SUITE_TASKS else
                                    ["backbone", "method", "method_setting", "family", *sorted(
                                        c for c in table.columns if f"{c}_n" in table.columns),
                                     "mean_over_tasks", "params_M", "ppt", "peak_train_mem_mb", "train_img_s"]))
        versus_path = out / f"{name}_vs_reference.csv"
        if versus_path.exists():
            versus = pd.read_csv(versus_path, keep_default_na=True)
            parts.append(f"\n### {name}: ours − paper (means and groups; per task in `{versus_path.name}`)\n")
            parts.append(markdown_table(_versus_summary(versus)))
        for key, png in sorted(figures.items()):
            if key.startswith(f"plot:{name}_"):
                stem = png.stem
                parts.append(f"\n![{stem}](plots/{png.name})\n\n[data](plots/{stem}.csv)\n")
    pareto_path = out / "pareto.csv"
    if pareto_path.exists():
        parts.append("\n## Pareto fronts (accuracy vs trainable parameters / peak training memory)\n")
        parts.append(markdown_table(pd.read_csv(pareto_path)))
    if not reference.empty:
        sources = sorted(set(reference["source"]))
        parts.append("\n## Published numbers used\n")
        parts.extend(f"- {s}\n" for s in sources)
    path = out / "summary.md"
    path.write_text("\n".join(parts))
    return path
