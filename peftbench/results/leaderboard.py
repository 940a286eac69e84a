"""Leaderboards derived, by pandas, from the run JSONs only.

Written to ``<results>/leaderboard/``:

* ``runs.csv``: one row per run JSON, every status, all metrics (flattened).
* ``problems.csv``: failed, diverged and unfinished runs, and unreadable JSONs, listed apart.
* ``vtab1k.csv``: a row per backbone x method x method-setting; the 19 tasks (mean over seeds, plus
  ``<task>_std`` and ``<task>_n``), the Natural / Specialized / Structured means, ``mean_of_group_means``
  (older papers' "Mean"), ``mean_over_tasks`` (V-PETL Bench's "Mean"), params. A group mean is empty
  unless every task of the group has a result.
* ``fgvc.csv``: the 5 FGVC sets, their mean, params.
* ``embedded.csv``: the embedded offline tasks, their mean, params.

Only ``final``-protocol runs with status ``success`` enter the suite tables. When a (row, task) has
finished runs of more than one setting (e.g. two learning rates), the most recently finished setting
is used and the others are named in ``problems.csv``: results are never silently averaged across
settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from peftbench.results.io import RESULT_FILE, read_result
from peftbench.results.suites import FGVC_TASKS, VTAB_GROUPS, VTAB_TASKS

ROW_KEYS = ["backbone", "method", "method_setting"]


def _short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _flatten(res: dict[str, Any], path: Path) -> dict[str, Any]:
    cfg = res.get("config", {})
    method_cfg = dict(cfg.get("method", {}))
    method_cfg.pop("name", None)
    seedless = json.loads(json.dumps(cfg, default=str))
    seedless.pop("seed", None)
    for key in ("paths", "logger", "on_existing"):
        seedless.pop(key, None)
    seedless.get("data", {}).pop("root", None)
    seedless.get("trainer", {}).pop("device", None)
    row = {k: v for k, v in res.items() if k not in ("config", "metrics", "versions", "normalization")}
    row["method_setting"] = _short_hash(method_cfg)
    row["setting_hash"] = _short_hash(seedless)
    row["method_options"] = json.dumps(method_cfg, sort_keys=True)
    for key, value in (res.get("metrics") or {}).items():
        if not isinstance(value, (list, dict)):
            row[key] = value
    row["result_path"] = str(path)
    return row


def collect_runs(results_dir: str | Path) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Read every ``runs/**/result.json``; unreadable ones are returned as problems."""
    rows, problems = [], []
    for path in sorted(Path(results_dir, "runs").rglob(RESULT_FILE)):
        try:
            res = read_result(path)
            if not isinstance(res, dict) or "status" not in res:
                raise ValueError("not a peftbench result (no 'status')")
            rows.append(_flatten(res, path))
        except (OSError, ValueError) as exc:
            problems.append({"result_path": str(path), "status": "unreadable", "message": str(exc)})
    return pd.DataFrame(rows), problems


def _suite_table(ok: pd.DataFrame, tasks: tuple[str, ...], groups: dict[str, tuple[str, ...]] | None,
                 problems: list[dict[str, str]]) -> pd.DataFrame:
    """Mean/std over seeds per task, one row per backbone x method x method setting."""
    out_rows = []
    for key, part in ok.groupby(ROW_KEYS, sort=True):
        row: dict[str, Any] = dict(zip(ROW_KEYS, key, strict=True))
        row["family"] = part["family"].iloc[0]
        row["subfamily"] = part["subfamily"].iloc[0]
        row["method_options"] = part["method_options"].iloc[0]
        for task in tasks:
            runs = part[part["task"] == task]
            if runs.empty:
                row[task] = row[f"{task}_std"] = None
                row[f"{task}_n"] = 0
                continue
            latest = runs.sort_values("finished_at")["setting_hash"].iloc[-1]
            for other in sorted(set(runs["setting_hash"]) - {latest}):
                problems.append({
                    "result_path": ";".join(runs[runs["setting_hash"] == other]["result_path"]),
                    "status": "superseded",
                    "message": f"{'/'.join(map(str, key))} on {task}: setting {other} not averaged in; "
                               f"the table uses the most recent setting {latest}",
                })
            acc = runs[runs["setting_hash"] == latest]["accuracy"].astype(float)
            row[task] = acc.mean()
            row[f"{task}_std"] = acc.std(ddof=0) if len(acc) > 1 else 0.0
            row[f"{task}_n"] = len(acc)
        values = [row[t] for t in tasks]
        if groups:
            group_means = []
            for group, members in groups.items():
                vals = [row[t] for t in members]
                row[group] = sum(vals) / len(vals) if all(v is not None for v in vals) else None
                group_means.append(row[group])
            row["mean_of_group_means"] = (
                sum(group_means) / len(group_means) if all(g is not None for g in group_means) else None
            )
        present = [v for v in values if v is not None]
        row["mean_over_tasks"] = sum(present) / len(present) if len(present) == len(tasks) else None
        row["mean_over_present_tasks"] = sum(present) / len(present) if present else None
        row["tasks_present"] = len(present)
        row["params_M"] = part["trainable_params_without_head"].max() / 1e6
        row["params_with_head_M"] = part["trainable_params"].max() / 1e6
        row["trainable_percent"] = part["trainable_percent"].max()
        out_rows.append(row)
    return pd.DataFrame(out_rows)


def build_leaderboard(results_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write the leaderboard CSVs; return their paths by table name."""
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir / "leaderboard"
    out.mkdir(parents=True, exist_ok=True)
    runs, problems = collect_runs(results_dir)
    written: dict[str, Path] = {}
    runs.to_csv(out / "runs.csv", index=False)
    written["runs"] = out / "runs.csv"
    if not runs.empty:
        bad = runs[runs["status"] != "success"]
        for _, r in bad.iterrows():
            problems.append({"result_path": r["result_path"], "status": r["status"], "message": r.get("message", "")})
        ok = runs[(runs["status"] == "success") & (runs["protocol"] == "final")]
        suites = {
            "vtab1k": ("vtab", VTAB_TASKS, VTAB_GROUPS),
            "fgvc": ("fgvc", FGVC_TASKS, None),
        }
        embedded_tasks = tuple(sorted(ok[ok["suite"] == "embedded"]["task"].unique()))
        if embedded_tasks:
            suites["embedded"] = ("embedded", embedded_tasks, None)
        for name, (suite, tasks, groups) in suites.items():
            part = ok[ok["suite"] == suite]
            if part.empty:
                continue
            table = _suite_table(part, tasks, groups, problems)
            table.to_csv(out / f"{name}.csv", index=False)
            written[name] = out / f"{name}.csv"
    pd.DataFrame(problems, columns=["result_path", "status", "message"]).to_csv(out / "problems.csv", index=False)
    written["problems"] = out / "problems.csv"
    return written
