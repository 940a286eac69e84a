"""Statistics over seeds and tasks for the suite tables: confidence intervals, mean ranks, paired tests.

* ``<task>_ci95``: half-width of the 95% confidence interval of a task's mean over seeds,
  ``t_{0.975, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation (ddof=1).
* ``mean_rank``: rows of one backbone ranked per task by their mean (1 = most accurate, ties share the
  average rank), averaged over the tasks the row has.
* ``significance.csv``: per pair of rows of one backbone, a Wilcoxon signed-rank test over the tasks both
  have, and per task a t-test over seeds (paired by seed when both rows ran the same seeds).

Too few seeds or tasks never print NaN: a ci95 cell with one run is empty (``<task>_n`` is 1 beside it) and
the command line says so once per table (:func:`too_few_seeds`); a significance row with too few pairs has
an empty statistic and p-value and a ``note`` saying how many it needs.

Reference: Demšar, "Statistical Comparisons of Classifiers over Multiple Data Sets", JMLR 7 (2006):
average ranks and the Wilcoxon signed-rank test over data sets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CI_LEVEL = 0.95
MIN_SEEDS = 2  # a spread, an interval or a t-test needs two values
MIN_TASKS = 2  # a test over one pair of task means is no test
# the exact two-sided Wilcoxon p-value is at least 2 / 2**n: it can fall below 0.05 from 6 differences on
WILCOXON_TASKS_FOR_5_PERCENT = 6
# accuracies are percentages: a smaller difference is float noise from averaging, not a difference
EPS = 1e-9
SIGNIFICANCE_COLUMNS = ("over", "task", "test", "statistic", "p_value", "n_a", "n_b", "mean_diff", "note")


def ci95_half_width(values: Sequence[float]) -> float | None:
    """Half-width of the 95% t-interval of the mean of ``values``.

    Args:
        values: one accuracy per seed.

    Returns:
        ``t_{0.975, n-1} * s / sqrt(n)`` (``s`` with ddof=1), or ``None`` for fewer than two values.
    """
    x = np.asarray(values, dtype=float)
    if x.size < MIN_SEEDS:
        return None
    t = stats.t.ppf(0.5 + CI_LEVEL / 2, x.size - 1)
    return float(t * x.std(ddof=1) / math.sqrt(x.size))


def mean_rank(table: pd.DataFrame, tasks: Sequence[str], by: str = "backbone") -> pd.Series:
    """Average rank of each row over tasks, ranked among the rows with the same ``by`` value.

    Per task, the rows that have a mean for it are ranked by that mean (highest = 1; tied means share the
    average of their ranks); a row without the task is not ranked on it and does not shift the others'
    ranks. A row's ``mean_rank`` is the mean over the tasks it has, so compare it only between rows with the
    same ``tasks_present``.

    Args:
        table: a suite table, one column of means per task.
        tasks: the task columns.
        by: rows are ranked only against rows of the same value here (the backbone).

    Returns:
        The mean rank per row (index of ``table``).
    """
    means = table[[t for t in tasks if t in table]].astype(float)
    return means.groupby(table[by]).rank(ascending=False, method="average").mean(axis=1, skipna=True)


def too_few_seeds(table_name: str, runs: pd.DataFrame, keys: Sequence[str]) -> str | None:
    """The one line that says which ci95 cells of a suite table are empty for want of a second seed.

    Args:
        table_name: the table (``vtab1k``, ``fgvc``, ``embedded``).
        runs: the runs the table averaged: ``keys`` and ``task``.
        keys: the columns naming a row.

    Returns:
        ``"<table>: ci95 needs at least two seeds (1 run): <task> (<k> row(s)), ..."``, or ``None`` when every
        row has at least two runs of every task it has.
    """
    per_row = runs.groupby([*keys, "task"]).size()
    single = per_row[per_row < MIN_SEEDS].groupby(level="task").size()
    if single.empty:
        return None
    tasks = ", ".join(f"{task} ({k} row{'s' if k > 1 else ''})" for task, k in single.items())
    return f"{table_name}: ci95 needs at least {MIN_SEEDS} seeds (1 run): {tasks}; those cells are empty"


def _result(test: str, n_a: int, n_b: int, mean_diff: float | None, note: str = "",
            res: Any = None) -> dict[str, Any]:
    """One significance row's test columns; ``res`` is scipy's result, ``None`` when the test was not run."""
    return {"test": test, "statistic": None if res is None else float(res.statistic),
            "p_value": None if res is None else float(res.pvalue), "n_a": n_a, "n_b": n_b,
            "mean_diff": mean_diff, "note": note}


def wilcoxon_over_tasks(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of the task means of two rows, paired by task.

    Tasks with equal means are dropped (scipy's ``zero_method="wilcox"``), as Wilcoxon's test does.

    Args:
        a: row A's mean per shared task.
        b: row B's mean on the same tasks, in the same order.

    Returns:
        ``test``, ``statistic``, ``p_value``, ``n_a`` = ``n_b`` (the shared tasks), ``mean_diff`` (mean of
        A - B) and ``note`` (empty, or why there is no p-value or why it cannot reach 0.05).
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d[np.abs(d) < EPS] = 0.0
    n = int(d.size)
    mean_diff = float(d.mean()) if n else None
    if n < MIN_TASKS:
        return _result("wilcoxon signed-rank", n, n, mean_diff,
                       f"needs at least {MIN_TASKS} tasks that both rows have ({n})")
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return _result("wilcoxon signed-rank", n, n, mean_diff, "equal means on every shared task: nothing to test")
    note = ""
    if nonzero < WILCOXON_TASKS_FOR_5_PERCENT:
        note = (f"{nonzero} task(s) differ: the exact test needs at least {WILCOXON_TASKS_FOR_5_PERCENT} "
                "for a two-sided p below 0.05")
    return _result("wilcoxon signed-rank", n, n, mean_diff, note, stats.wilcoxon(d))


def t_test_over_seeds(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    """Two-sided t-test of one task's accuracies over seeds: paired by seed when both rows ran the same seeds.

    A t-test because a task has few seeds (often 3 to 5), where a rank test cannot reach p < 0.05 (the
    exact Wilcoxon needs 6 pairs); it assumes roughly normal seed-to-seed noise, as a mean ± std does.
    Paired (``scipy.stats.ttest_rel``) when both rows have the same seeds, since two runs with one seed share
    what the seed draws and the pairing removes that shared noise; otherwise Welch's test
    (``ttest_ind(equal_var=False)``) on all seeds of each, as two methods' spreads need not be equal.

    Args:
        a: row A's accuracy per run, indexed by seed.
        b: row B's accuracy per run, indexed by seed.

    Returns:
        ``test`` (``paired t`` or ``welch t``), ``statistic``, ``p_value``, ``n_a`` / ``n_b`` (the seeds of
        each), ``mean_diff`` (mean of A - mean of B) and ``note`` (empty, or why there is no p-value).
    """
    mean_diff = float(a.mean() - b.mean())
    if a.index.is_unique and b.index.is_unique and set(a.index) == set(b.index):
        seeds = sorted(a.index)
        x, y = a[seeds].to_numpy(float), b[seeds].to_numpy(float)
        if len(seeds) < MIN_SEEDS:
            return _result("paired t", len(seeds), len(seeds), mean_diff,
                           f"needs at least {MIN_SEEDS} seeds ({len(seeds)})")
        if np.ptp(x - y) < EPS:
            return _result("paired t", len(seeds), len(seeds), mean_diff,
                           "the same difference on every seed: t is undefined")
        return _result("paired t", len(seeds), len(seeds), mean_diff, res=stats.ttest_rel(x, y))
    x, y = a.to_numpy(float), b.to_numpy(float)
    if min(x.size, y.size) < MIN_SEEDS:
        return _result("welch t", x.size, y.size, mean_diff,
                       f"needs at least {MIN_SEEDS} seeds in each row ({x.size} and {y.size})")
    if np.ptp(x) < EPS and np.ptp(y) < EPS:
        return _result("welch t", x.size, y.size, mean_diff, "no spread over seeds in either row: t is undefined")
    return _result("welch t", x.size, y.size, mean_diff, res=stats.ttest_ind(x, y, equal_var=False))


def significance(table: pd.DataFrame, runs: pd.DataFrame, tasks: Sequence[str],
                 keys: Sequence[str] = ("backbone", "method", "method_setting")) -> pd.DataFrame:
    """Paired tests between every two rows of the same backbone of one suite table.

    Args:
        table: the suite table (``keys`` and one column of means per task).
        runs: the runs it averaged: ``keys``, ``task``, ``seed``, ``accuracy``.
        tasks: the task columns.
        keys: the columns naming a row; the first (the backbone) is never compared across.

    Returns:
        One row per pair (A before B in ``table`` order) with ``over = "tasks"`` (:func:`wilcoxon_over_tasks`,
        ``task`` empty), then one per task both have with ``over = "seeds"`` (:func:`t_test_over_seeds`);
        columns ``<key>`` for the backbone, ``<key>_a`` / ``<key>_b`` for the rest, and
        :data:`SIGNIFICANCE_COLUMNS`.
    """
    group, *ident = keys
    columns = [group, *(f"{k}_{s}" for s in "ab" for k in ident), *SIGNIFICANCE_COLUMNS]
    accuracy = {key: part.set_index("seed")["accuracy"].astype(float)
                for key, part in runs.groupby([*keys, "task"], sort=False)}
    out = []
    for value, part in table.groupby(group, sort=True):
        for a, b in itertools.combinations(part.to_dict("records"), 2):
            pair = {group: value, **{f"{k}_a": a[k] for k in ident}, **{f"{k}_b": b[k] for k in ident}}
            shared = [t for t in tasks if pd.notna(a.get(t)) and pd.notna(b.get(t))]
            out.append({**pair, "over": "tasks", "task": "",
                        **wilcoxon_over_tasks([a[t] for t in shared], [b[t] for t in shared])})
            for task in shared:
                seeds_a = accuracy[(*(a[k] for k in keys), task)]
                seeds_b = accuracy[(*(b[k] for k in keys), task)]
                out.append({**pair, "over": "seeds", "task": task, **t_test_over_seeds(seeds_a, seeds_b)})
    return pd.DataFrame(out, columns=columns)
