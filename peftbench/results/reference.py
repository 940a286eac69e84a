"""Published per-task numbers, read from ``results/reference/*.csv``, and our runs set beside them.

A reference CSV holds one row per (source, method) with the columns of :data:`REQUIRED_COLUMNS`, one
column per task of its suite (peftbench's dataset names, see :mod:`peftbench.results.suites`) and the
source's own ``paper_mean``, ``params_M`` (trainable parameters in millions, head excluded) and
``paper_ppt``. ``method`` is peftbench's registered name where one fits, empty otherwise (the row is
then a reference point in the plots only); ``family`` (optional) colours the point in the plots.
Every row names its ``source``; ``results/reference/README.md`` says where each number was read.

Optional columns describe the published setting (:data:`SETTING_COLUMNS`): the ``recipe``
(``configs/experiment/<source>/<method>``) that reproduces the row, the ``method_options`` it used (a JSON
object; ``"per_task"`` where an option varies per task), whether it is ``comparable`` with peftbench's
method, where its numbers were first printed (``copied_from``), which number the source ``reports``
(``last`` epoch or ``max_test`` over checkpoints), its ``seeds``, ``params_include_head``,
``paper_mean_kind`` (``mean_over_tasks`` or ``mean_of_group_means``) and its ``role`` (``primary``, or
``second_source``: another printing of numbers a primary row holds, compared but not plotted).

Matching respects the backbone and the full setting (:func:`setting_mismatch`): a row that names a ``recipe``
is compared only with runs of that recipe; a row without one only with runs made without a recipe whose method
options are the registered defaults with the row's ``method_options`` applied. Rows marked ``comparable=no``
never are. Each comparison uses the number the source printed (``reports``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from peftbench.errors import DataError
from peftbench.results.suites import FGVC_TASKS, VTAB_GROUPS, VTAB_TASKS

REQUIRED_COLUMNS = ("suite", "backbone", "method", "display_name", "source")
SUITE_TASKS: dict[str, tuple[str, ...]] = {"vtab": VTAB_TASKS, "fgvc": FGVC_TASKS}
SUITE_GROUPS: dict[str, dict[str, tuple[str, ...]] | None] = {"vtab": VTAB_GROUPS, "fgvc": None}

# V-PETL Bench's Performance-Parameter Trade-off normalises the trainable-parameter count by 10^7.
PPT_PARAM_SCALE = 1e7
ROW_KEYS_OUT = ("backbone", "method", "method_setting", "recipe")
PER_TASK = "per_task"  # a method_options value that varies per task: only the row's recipe reproduces it
# optional text columns describing the published setting -> (valid values or None for free text, default)
SETTING_COLUMNS: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "recipe": (None, ""),
    "method_options": (None, "{}"),
    "comparable": (("yes", "no"), "yes"),
    "copied_from": (None, ""),
    "reports": (("last", "max_test", "unknown"), "unknown"),
    "seeds": (None, "unknown"),
    "params_include_head": (("yes", "no", "unknown"), "no"),
    "paper_mean_kind": (("mean_over_tasks", "mean_of_group_means"), "mean_over_tasks"),
    "role": (("primary", "second_source"), "primary"),
}
TEXT_COLUMNS = ("family", "source_table", "notes", *SETTING_COLUMNS)


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
            frame = pd.read_csv(path, dtype={c: str for c in ("method", *TEXT_COLUMNS)}, keep_default_na=False,
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
        # PPT takes the plain mean over tasks: the printed one, or the cells' where the source printed another mean
        mean = row.get("paper_mean") if row["paper_mean_kind"] == "mean_over_tasks" else means["mean_over_tasks"]
        means["ppt"] = ppt(mean, None if pd.isna(params) else params * 1e6)
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
    known = set(REQUIRED_COLUMNS) | {"paper_mean", "params_M", "paper_ppt", *TEXT_COLUMNS}
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
    numeric = [c for c in frame.columns if c in known - set(REQUIRED_COLUMNS) - set(TEXT_COLUMNS)]
    for col in numeric:
        converted = pd.to_numeric(frame[col], errors="coerce")
        if (converted.isna() & frame[col].notna()).any():
            raise DataError(f"reference table {path}: column {col} holds a value that is not a number")
        frame[col] = converted
    for col in ("method", "family"):
        frame[col] = frame[col].fillna("").astype(str) if col in frame else ""
    for col, (valid, default) in SETTING_COLUMNS.items():
        values = frame[col].fillna("").astype(str).str.strip() if col in frame else pd.Series("", index=frame.index)
        frame[col] = values.where(values != "", default)
        if valid is not None:
            bad = sorted(set(frame[col]) - set(valid))
            if bad:
                raise DataError(f"reference table {path}: column {col} holds {', '.join(map(repr, bad))}; "
                                f"valid: {', '.join(valid)} (or empty for {default!r})")
    for i, text in frame["method_options"].items():
        try:
            options = json.loads(text)
        except ValueError:
            options = None
        if not isinstance(options, dict):
            raise DataError(f"reference table {path}: row {i + 2} method_options {text!r} is not a JSON object, "
                            'e.g. {"rank": 8} or {}')
    return frame


def _options(text: Any) -> dict[str, Any]:
    """A ``method_options`` cell (JSON object) as a dict; empty or missing is ``{}``."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or str(text).strip() == "":
        return {}
    return json.loads(text)


def _same(a: Any, b: Any) -> bool:
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if numbers:
        return math.isclose(float(a), float(b))
    return a == b


def default_options(method: str) -> dict[str, Any] | None:
    """A registered method's YAML defaults, ``name`` and ``label`` left out (None when it cannot be composed)."""
    from peftbench.config import compose

    try:
        block = compose([f"method={method}"])["method"]
    except Exception:  # an unregistered name or a config Hydra cannot compose: nothing to match against
        return None
    return {k: v for k, v in block.items() if k not in ("name", "label")}


def setting_mismatch(our: pd.Series, paper: pd.Series, defaults: dict[str, Any] | None) -> str:
    """Why a reference row on our backbone is not set beside our row (``""``: it is).

    Args:
        our: a row of a suite table (``method``, ``method_options`` as JSON, ``recipe``).
        paper: a row of :func:`load_reference`'s table.
        defaults: the registered defaults of our row's method (:func:`default_options`).

    Returns:
        An empty string when the row matches, else a short reason naming the row.
    """
    name = paper["display_name"]
    if paper.get("comparable", "yes") == "no":
        return f"{name}: not comparable (see its notes)"
    recipe, ours = paper.get("recipe", "") or "", our.get("recipe", "") or ""
    if recipe or ours:
        if recipe == ours:
            return ""
        return f"{name}: run with experiment={recipe}" if recipe else f"{name}: published without a recipe"
    if paper["method"] != our["method"]:
        return f"{name}: another method"
    wanted = _options(paper.get("method_options"))
    if any(v == PER_TASK for v in wanted.values()):
        return f"{name}: per-task {', '.join(k for k, v in wanted.items() if v == PER_TASK)}"
    have = _options(our.get("method_options"))
    expected = {**(defaults or have), **wanted}
    differ = {k: v for k, v in expected.items() if k not in have or not _same(have[k], v)}
    if differ:
        return f"{name}: published for {json.dumps(differ)}, this row has {json.dumps({k: have.get(k) for k in differ})}"
    return ""


def compare(ours: dict[str, pd.DataFrame], reference: pd.DataFrame, suite: str) -> pd.DataFrame:
    """Ours beside the papers: one row per our row x matching reference row x task / group / mean.

    A reference row matches when it is on our row's backbone and was run with its setting
    (:func:`setting_mismatch`); the comparison takes the number its source printed (``reports``: ``last`` from the
    headline table, ``max_test`` from the max-test table; ``unknown`` uses the last epoch and says so). Our rows
    without a match are listed once with ``reference_status`` saying why, so a missing comparison is visible.

    Args:
        ours: the suite tables by metric: ``{"last": table, "max_test": table}`` (``max_test`` optional).
        reference: :func:`load_reference`'s table.
        suite: ``"vtab"`` or ``"fgvc"``.

    Returns:
        Long table with ``ours``, ``paper`` and ``delta`` (= ours - paper) per ``metric``, the number compared
        (``reports``) and the reference row's ``reference_recipe``.
    """
    tasks, groups = SUITE_TASKS[suite], SUITE_GROUPS[suite]
    metrics = [*tasks, *(groups or {}), *(["mean_of_group_means"] if groups else []), "mean_over_tasks", "ppt"]
    ref = reference[reference["suite"] == suite] if not reference.empty else reference
    defaults: dict[str, dict[str, Any] | None] = {}
    rows = []
    for index, our in ours["last"].iterrows():
        key = {k: our.get(k, "") for k in ROW_KEYS_OUT}
        same_method = ref[ref["method"] == our["method"]] if not ref.empty else ref
        candidates = ref[ref["backbone"] == our["backbone"]] if not ref.empty else ref
        if our["method"] not in defaults:
            defaults[our["method"]] = default_options(our["method"])
        reasons = {i: setting_mismatch(our, paper, defaults[our["method"]]) for i, paper in candidates.iterrows()}
        matches = candidates.loc[[i for i, why in reasons.items() if not why]]
        if matches.empty:
            if not same_method.empty and our["backbone"] not in set(same_method["backbone"]):
                why = "published only for backbone(s) " + ", ".join(sorted(set(same_method["backbone"])))
            elif same_method.empty and not our.get("recipe"):
                why = "no published row for this method"
            else:
                related = [reasons[i] for i in same_method.index if i in reasons] or ["none"]
                why = f"no published row for this setting (recipe {our.get('recipe') or 'none'}): " + "; ".join(related)
            rows.append({**key, "reference": "", "source": "", "reports": "", "metric": "", "ours": None,
                         "paper": None, "delta": None, "reference_status": why, "reference_recipe": ""})
            continue
        for _, paper in matches.iterrows():
            reports = paper.get("reports", "unknown") or "unknown"
            table = ours.get("max_test" if reports == "max_test" else "last")
            mine_row = table.loc[index] if table is not None and index in table.index else None
            for metric in metrics:
                mine = None if mine_row is None else mine_row.get(metric)
                theirs = paper.get(metric)
                mine = None if mine is None or pd.isna(mine) else float(mine)
                theirs = None if theirs is None or pd.isna(theirs) else float(theirs)
                rows.append({**key, "reference": paper["display_name"], "source": paper["source"],
                             "reports": reports, "metric": metric, "ours": mine, "paper": theirs,
                             "delta": None if mine is None or theirs is None else mine - theirs,
                             "reference_status": "matched", "reference_recipe": paper.get("recipe", "")})
    columns = [*ROW_KEYS_OUT, "reference", "source", "reports", "metric", "ours", "paper", "delta",
               "reference_status", "reference_recipe"]
    return pd.DataFrame(rows, columns=columns)
