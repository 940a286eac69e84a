"""Pareto fronts of accuracy against cost (trainable parameters, peak training memory).

A row is on a front when no other row of the same suite and backbone is at least as accurate and at
most as costly, and strictly better in one of the two. Only rows with every task of the suite enter a
front (a mean over fewer tasks is not comparable); the others are listed with ``complete = False``.
"""

from __future__ import annotations

import pandas as pd

# (front column, cost column of the suite table)
FRONTS = (("pareto_params", "params_M"), ("pareto_memory", "peak_train_mem_mb"))
ACCURACY = "mean_over_tasks"


def pareto_mask(accuracy: list[float], cost: list[float]) -> list[bool]:
    """Which points are not dominated (higher accuracy is better, lower cost is better).

    Args:
        accuracy: one value per point.
        cost: one value per point, same length.

    Returns:
        ``True`` for every point on the front.
    """
    on_front = []
    for i, (a_i, c_i) in enumerate(zip(accuracy, cost, strict=True)):
        dominated = any(
            a_j >= a_i and c_j <= c_i and (a_j > a_i or c_j < c_i)
            for j, (a_j, c_j) in enumerate(zip(accuracy, cost, strict=True)) if j != i
        )
        on_front.append(not dominated)
    return on_front


def pareto_table(tables: dict[str, tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """One row per suite-table row with its accuracy, costs and front memberships.

    Args:
        tables: ``{table name: (suite, suite table)}`` as the leaderboard builds them.

    Returns:
        Columns ``table, suite, backbone, method, method_setting, family, complete, accuracy,
        params_M, peak_train_mem_mb, pareto_params, pareto_memory`` (a front column is empty where the
        row has no accuracy over every task or no value of that cost).
    """
    rows = []
    for name, (suite, table) in tables.items():
        for backbone, part in table.groupby("backbone", sort=True):
            block = pd.DataFrame({
                "table": name, "suite": suite, "backbone": backbone, "method": part["method"],
                "method_setting": part["method_setting"], "family": part["family"],
                "complete": part[ACCURACY].notna(), "accuracy": part[ACCURACY],
                "params_M": part["params_M"], "peak_train_mem_mb": part["peak_train_mem_mb"],
            })
            for front, cost in FRONTS:
                usable = block["complete"] & block[cost].notna()
                block[front] = pd.Series([None] * len(block), index=block.index, dtype=object)
                if usable.any():
                    mask = pareto_mask(block.loc[usable, "accuracy"].astype(float).tolist(),
                                       block.loc[usable, cost].astype(float).tolist())
                    block.loc[usable, front] = mask
            rows.append(block)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
