"""Figures of accuracy against cost, each written as a PNG plus a CSV of exactly the points it shows.

Per suite table and backbone:

* ``<table>_<backbone>_acc_vs_params``: mean accuracy vs trainable parameters (head excluded, log x),
  coloured by family; the published numbers (``results/reference``) are drawn as crosses, only on the
  backbone they were measured with.
* ``<table>_<backbone>_acc_vs_memory``: mean accuracy vs peak training memory (MB).
* ``<table>_<backbone>_acc_vs_throughput``: mean accuracy vs training images/s.

A row with results on only some tasks is drawn hollow at its mean over the tasks it has (the CSV says
``complete = False``); a method with no trainable parameter besides the head is drawn at
:data:`ZERO_PARAMS_M` on the log axis (the CSV keeps the true 0 in ``x``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from peftbench.errors import PeftbenchError

FAMILY_COLORS = {"baseline": "#555555", "addition": "#1f77b4", "partial": "#ff7f0e", "unified": "#2ca02c"}
OTHER_COLOR = "#9467bd"
ZERO_PARAMS_M = 1e-3  # where 0 trainable parameters sit on a log axis (1k parameters)
# figure kind -> (x column of the suite table, x label, log x)
KINDS = {
    "acc_vs_params": ("params_M", "trainable parameters, head excluded (M, log scale; 0 drawn at 0.001)", True),
    "acc_vs_memory": ("peak_train_mem_mb", "peak training memory (MB)", False),
    "acc_vs_throughput": ("train_img_s", "training throughput (images/s)", False),
}
CSV_COLUMNS = ["series", "label", "family", "complete", "tasks_present", "x", "x_plotted", "y", "source"]


class PlotsUnavailableError(PeftbenchError):
    """Plots were asked for but matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlotsUnavailableError` with the fix when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotsUnavailableError(
            "the leaderboard plots need matplotlib, which is not installed; install the plots extra "
            "(pip install -e \".[plots]\") or pass --no-plots to write the tables only"
        ) from exc


def _points(suite: str, table: pd.DataFrame, reference: pd.DataFrame, backbone: str, kind: str) -> pd.DataFrame:
    """The points of one figure: ours, then the published ones (accuracy vs params only)."""
    x_col = KINDS[kind][0]
    ours = table[table["backbone"] == backbone]
    n_tasks = ours["tasks_present"].max()
    rows = []
    for _, r in ours.iterrows():
        complete = pd.notna(r["mean_over_tasks"])
        y = r["mean_over_tasks"] if complete else r["mean_over_present_tasks"]
        x = r.get(x_col)
        if pd.isna(x) or pd.isna(y):
            continue
        label = r["method"] if complete else f"{r['method']} ({r['tasks_present']} tasks)"
        rows.append({"series": "ours", "label": label, "family": r["family"], "complete": bool(complete),
                     "tasks_present": int(r["tasks_present"]), "x": float(x), "y": float(y), "source": "this run set"})
    if kind == "acc_vs_params" and not reference.empty:
        families = dict(zip(table["method"], table["family"], strict=False))
        ref = reference[(reference["suite"] == suite) & (reference["backbone"] == backbone)]
        if "role" in ref:  # a second printing of a primary row's numbers is compared, not plotted twice
            ref = ref[ref["role"] != "second_source"]
        for _, r in ref.iterrows():
            if pd.isna(r["mean_over_tasks"]) or pd.isna(r.get("params_M")):
                continue
            family = r.get("family") or families.get(r["method"], "")
            rows.append({"series": "paper", "label": r["display_name"], "family": family,
                         "complete": True, "tasks_present": n_tasks if pd.notna(n_tasks) else None,
                         "x": float(r["params_M"]), "y": float(r["mean_over_tasks"]), "source": r["source"]})
    points = pd.DataFrame(rows, columns=[c for c in CSV_COLUMNS if c != "x_plotted"])
    x_plotted = points["x"].where(points["x"] > 0, ZERO_PARAMS_M) if KINDS[kind][2] else points["x"]
    points.insert(CSV_COLUMNS.index("x_plotted"), "x_plotted", x_plotted)
    return points


def _draw(points: pd.DataFrame, kind: str, title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    x_label, log_x = KINDS[kind][1], KINDS[kind][2]
    fig = Figure(figsize=(7.5, 5.0), dpi=120)
    ax = fig.add_subplot()
    seen = set()
    for _, p in points.iterrows():
        color = FAMILY_COLORS.get(p["family"], OTHER_COLOR)
        paper = p["series"] == "paper"
        name = f"{'paper' if paper else 'ours'}: {p['family'] or 'other'}"
        ax.scatter(p["x_plotted"], p["y"], marker="x" if paper else "o", s=40 if paper else 55,
                   color=color if paper or p["complete"] else "none", edgecolors=None if paper else color,
                   linewidths=1.5, label=None if name in seen else name, zorder=3 if not paper else 2)
        seen.add(name)
        ax.annotate(p["label"], (p["x_plotted"], p["y"]), fontsize=7, xytext=(4, 3), textcoords="offset points",
                    color="#333333" if not paper else "#777777")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("mean top-1 accuracy over tasks (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if seen:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)


def write_plots(tables: dict[str, tuple[str, pd.DataFrame]], reference: pd.DataFrame, out: str | Path) -> dict[str, Path]:
    """Write every figure (PNG) and its data (CSV) into ``out``.

    Args:
        tables: ``{table name: (suite, suite table)}`` as the leaderboard builds them.
        reference: published numbers (:func:`peftbench.results.reference.load_reference`).
        out: output folder, created if needed.

    Returns:
        ``{"plot:<figure name>": png path}``; each PNG has a ``.csv`` of the same name beside it.
    """
    require_matplotlib()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, (suite, table) in tables.items():
        for backbone in sorted(set(table["backbone"])):
            for kind in KINDS:
                points = _points(suite, table, reference, backbone, kind)
                if points.empty:
                    continue
                stem = f"{name}_{backbone}_{kind}"
                points.to_csv(out / f"{stem}.csv", index=False)
                _draw(points, kind, f"{name} on {backbone}", out / f"{stem}.png")
                written[f"plot:{stem}"] = out / f"{stem}.png"
    return written
