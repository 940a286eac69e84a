"""Published per-task numbers, read from ``results/reference/*.csv``, and our runs set beside them.

A reference CSV holds one row per (source, method) with the columns of :data:`REQUIRED_COLUMNS`, one
column per task of its suite (peftbench's dataset names, see :mod:`peftbench.results.suites`) and the
source's own ``paper_mean``, ``params_M`` (trainable parameters in millions, head excluded) and
``paper_ppt``. ``method`` is peftbench's registered name where one fits, empty otherwise (the row is
then a reference point in the plots only); ``family`` (optional) colours the point in the plots.
Every row names its ``source``; ``results/reference/README.md`` says where each number was read.

Matching respects the backbone: a reference row is compared only with our rows on the same
``backbone`` (the published ViT-B/16 tables are ``vit_b16_in21k``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from peftbench.errors import DataError
from peftbench.results.suites import FGVC_TASKS, VTAB_GROUPS, VTAB_TASKS

REQUIRED_COLUMNS = ("suite", "backbone", "method", "display_name", "source")
SUITE_TASKS: dict[str, tuple[str, ...]] = {"vtab": VTAB_TASKS, "fgvc": FGVC_TASKS}
SUITE_GROUPS: dict[str, dict[str, tuple[str, ...]] | None] = {"vtab": VTAB_GROUPS, "fgvc": None}

# optional text columns: the recipe that reproduces a row (configs/experiment/<recipe>.yaml), which number its
# source printed (last epoch or max test accuracy over evaluated epochs), the seeds, and a free comparability note
TEXT_COLUMNS = ("recipe", "reports", "seeds", "comparable")
REPORTS = ("last", "max_test")
# V-PETL Bench's Performance-Parameter Trade-off normalises the trainable-parameter count by 10^7.
PPT_PARAM_SCALE = 1e7
ROW_KEYS_OUT = ("backbone", "method", "method_setting", "recipe")


def ppt(mean_accuracy: float | None, trainable_params: float | None) -> float | None:
    """Performance-Parameter Trade-off of V-PETL Bench (Xin et al., 2024).

    ``PPT = (mean accuracy / 100) * exp(-log10(P / 10^7 + 1))`` with ``P`` the trainable parameters
    (head excluded) and the accuracy in percent.

    Args:
        mean_accuracy: mean top-1 accuracy over the suite's tasks, in percent.
        trainable_params: trainable parameters without the head (a count, not millions).

    Returns:
        The PPT in [0, 1], or ``None`` when either input is missing.
    """
    if mean_accuracy is None or trainable_params is None:
        return None
    if pd.isna(mean_accuracy) or pd.isna(trainable_params):
        return None
    return mean_accuracy / 100.0 * math.exp(-math.log10(trainable_params / PPT_PARAM_SCALE + 1.0))


def group_means(values: dict[str, float | None], groups: dict[str, tuple[str, ...]] | None,
                tasks: tuple[str, ...]) -> dict[str, float | None]:
    """Group means, their mean and the plain mean over tasks; ``None`` where a task is missing.

    Args:
        values: accuracy per task (``None`` / NaN for a missing task).
        groups: VTAB-1k groups, or ``None`` for a suite without groups.
        tasks: every task of the suite.

    Returns:
        ``{group: mean, ..., "mean_of_group_means": ..., "mean_over_tasks": ...}``.
    """
    def _mean(names: tuple[str, ...]) -> float | None:
        vals = [values.get(t) for t in names]
        if any(v is None or pd.isna(v) for v in vals):
            return None
        return sum(vals) / len(vals)

    out: dict[str, float | None] = {}
    if groups:
        for group, members in groups.items():
            out[group] = _mean(members)
        gm = [out[g] for g in groups]
        out["mean_of_group_means"] = None if any(g is None for g in gm) else sum(gm) / len(gm)
    out["mean_over_tasks"] = _mean(tasks)
    return out


def load_reference(reference_dir: str | Path) -> pd.DataFrame:
    """Read every ``*.csv`` in ``reference_dir`` into one table, checked against the suites' tasks.

    Adds the group means, ``mean_of_group_means``, ``mean_over_tasks`` (both computed from the cells)
    and ``ppt`` (computed from the source's mean and parameter count).

    Args:
        reference_dir: folder with the reference CSVs; a missing folder gives an empty table.

    Returns:
        One row per reference entry (``method`` is ``""`` where peftbench has no such method).

    Raises:
        DataError: a CSV that lacks a required column, names an unknown suite or task, has a row
            without a source, or a cell that is not a number.
    """
    folder = Path(reference_dir)
    frames = []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        try:
            frame = pd.read_csv(path, dtype={c: str for c in ("method", "family", "notes", *TEXT_COLUMNS)},
                                keep_default_na=False,
                                na_values={c: [""] for c in (*VTAB_TASKS, *FGVC_TASKS, "paper_mean", "params_M",
                                                             "paper_ppt")})
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"reference table {path} is not a readable CSV: {exc}") from exc
        frames.append(_check(frame, path))
    if not frames:
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    derived = []
    for _, row in table.iterrows():
        suite = row["suite"]
        tasks = SUITE_TASKS[suite]
        means = group_means({t: row.get(t) for t in tasks}, SUITE_GROUPS[suite], tasks)
        params = row.get("params_M")
        means["ppt"] = ppt(row.get("paper_mean"), None if pd.isna(params) else params * 1e6)
        derived.append(means)
    return pd.concat([table, pd.DataFrame(derived)], axis=1)


def _check(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"reference table {path} lacks the column(s) {', '.join(missing)}; "
                        f"required: {', '.join(REQUIRED_COLUMNS)} plus one column per task")
    bad_suites = sorted(set(frame["suite"]) - set(SUITE_TASKS))
    if bad_suites:
        raise DataError(f"reference table {path}: unknown suite(s) {', '.join(map(str, bad_suites))}; "
                        f"valid choices: {', '.join(sorted(SUITE_TASKS))}")
    known = set(REQUIRED_COLUMNS) | {"paper_mean", "params_M", "paper_ppt", "family", "source_table", "notes",
                                     *TEXT_COLUMNS}
    for suite in set(frame["suite"]):
        tasks = SUITE_TASKS[suite]
        absent = [t for t in tasks if t not in frame.columns]
        if absent:
            raise DataError(f"reference table {path} ({suite}) has no column for task(s) {', '.join(absent)}; "
                            f"task columns use peftbench's dataset names: {', '.join(tasks)}")
        known |= set(tasks)
    unknown = sorted(set(frame.columns) - known)
    if unknown:
        raise DataError(f"reference table {path}: unknown column(s) {', '.join(unknown)}; "
                        f"valid: {', '.join(sorted(known))}")
    unsourced = frame.index[frame["source"].astype(str).str.strip() == ""].tolist()
    if unsourced:
        raise DataError(f"reference table {path}: row(s) {', '.join(str(i + 2) for i in unsourced)} "
                        "have no source; every published number must name where it was read")
    numeric = [c for c in frame.columns
               if c in known - set(REQUIRED_COLUMNS) - {"family", "source_table", "notes", *TEXT_COLUMNS}]
    for col in numeric:
        converted = pd.to_numeric(frame[col], errors="coerce")
        if (converted.isna() & frame[col].notna()).any():
            raise DataError(f"reference table {path}: column {col} holds a value that is not a number")
        frame[col] = converted
    for col in ("method", "family", "recipe", "reports"):
        frame[col] = frame[col].fillna("").astype(str) if col in frame else ""
    bad = sorted(set(frame["reports"]) - {"", *REPORTS})
    if bad:
        raise DataError(f"reference table {path}: reports {', '.join(bad)}; valid: {', '.join(REPORTS)} (or empty = last)")
    return frame


def default_setting(method: str) -> str | None:
    """The ``method_setting`` of a registered method's YAML defaults (None when it cannot be composed)."""
    from peftbench.config import compose
    from peftbench.records import method_setting

    try:
        return method_setting(compose([f"method={method}"])["method"])
    except Exception:  # an unregistered name or a config Hydra cannot compose: nothing to match against
        return None


def _matches(our: pd.Series, ref: pd.DataFrame, defaults: dict[str, str | None]) -> pd.DataFrame:
    """The reference rows run with our row's full setting: the row's recipe when it names one, else the method's
    registered defaults (a rank-16 LoRA run is never set against the rank-8 row)."""
    if ref.empty:
        return ref
    same = ref[ref["backbone"] == our["backbone"]]
    recipes = same["recipe"] if "recipe" in same else pd.Series("", index=same.index)
    by_recipe = same[(recipes != "") & (recipes == our.get("recipe", ""))]
    if our.get("recipe", ""):
        return by_recipe
    if our["method"] not in defaults:
        defaults[our["method"]] = default_setting(our["method"])
    if our["method_setting"] != defaults[our["method"]]:
        return same.iloc[0:0]
    return same[(recipes == "") & (same["method"] == our["method"])]


def _why_unmatched(our: pd.Series, ref: pd.DataFrame) -> str:
    same_method = ref[ref["method"] == our["method"]] if not ref.empty else ref
    if same_method.empty:
        return "no published row for this method"
    if our["backbone"] not in set(same_method["backbone"]):
        return "published only for backbone(s) " + ", ".join(sorted(set(same_method["backbone"])))
    recipes = sorted({r for r in same_method.get("recipe", pd.Series(dtype=str)) if r})
    hint = f"; the published rows were run with experiment={', experiment='.join(recipes)}" if recipes else ""
    return f"no published row with this setting (recipe {our.get('recipe', '') or 'none'}){hint}"


def compare(ours: dict[str, pd.DataFrame], reference: pd.DataFrame, suite: str) -> pd.DataFrame:
    """Ours beside the papers: one row per our row x matching reference row x task / group / mean.

    A reference row matches our row when both are on the same backbone and were run with the same setting: the
    reference row's ``recipe`` equals ours, or (rows without a recipe) the method name equals ours and our run
    used the method's registered defaults without a recipe. Each comparison uses the number the source printed
    (the reference's ``reports``: ``last`` epoch, or ``max_test`` over evaluated epochs). Our rows without a match
    are listed once with ``reference_status`` saying why, so a missing comparison is visible rather than silent.

    Args:
        ours: the suite tables by metric: ``{"last": table, "max_test": table}`` (``max_test`` optional).
        reference: :func:`load_reference`'s table.
        suite: ``"vtab"`` or ``"fgvc"``.

    Returns:
        Long table with ``ours``, ``paper`` and ``delta`` (= ours - paper) per ``metric``.
    """
    tasks, groups = SUITE_TASKS[suite], SUITE_GROUPS[suite]
    metrics = [*tasks, *(groups or {}), *(["mean_of_group_means"] if groups else []), "mean_over_tasks", "ppt"]
    ref = reference[reference["suite"] == suite] if not reference.empty else reference
    last = ours["last"]
    defaults: dict[str, str | None] = {}
    rows = []
    for index, our in last.iterrows():
        key = {k: our.get(k, "") for k in ROW_KEYS_OUT}
        matches = _matches(our, ref, defaults)
        if matches.empty:
            rows.append({**key, "reference": "", "source": "", "reports": "", "metric": "", "ours": None,
                         "paper": None, "delta": None, "reference_status": _why_unmatched(our, ref)})
            continue
        for _, paper in matches.iterrows():
            reports = paper.get("reports") or "last"
            table = ours.get(reports)
            mine_row = table.loc[index] if table is not None and index in table.index else None
            for metric in metrics:
                mine = None if mine_row is None else mine_row.get(metric)
                theirs = paper.get(metric)
                mine = None if mine is None or pd.isna(mine) else float(mine)
                theirs = None if theirs is None or pd.isna(theirs) else float(theirs)
                rows.append({**key, "reference": paper["display_name"], "source": paper["source"],
                             "reports": reports, "metric": metric, "ours": mine, "paper": theirs,
                             "delta": None if mine is None or theirs is None else mine - theirs,
                             "reference_status": "matched"})
    columns = [*ROW_KEYS_OUT, "reference", "source", "reports", "metric", "ours", "paper", "delta",
               "reference_status"]
    return pd.DataFrame(rows, columns=columns)
