"""Leaderboards derived, by pandas, from the run JSONs only.

Written to ``<results>/leaderboard/``:

* ``runs.csv``: one row per readable run JSON, every status, all metrics (flattened), its ``recipe`` (the
  ``configs/experiment/`` recipe it ran, empty without one) and its ``schedule`` (the training schedule in one
  line; the suite tables list the schedules of the runs each row averages).
* ``problems.csv``: failed, diverged and superseded runs, runs in progress (``in_progress``: a JSON
  with status ``running``, a run folder without ``result.json``, or a failed run that left a resumable
  checkpoint), and unreadable or partial JSONs (``unreadable``, with the reason), listed apart.
* ``vtab1k.csv``: a row per backbone x method x method-setting; the 19 tasks (mean over seeds, plus
  ``<task>_std`` (population std), ``<task>_ci95`` (half-width of the 95% t-interval, empty below two
  seeds) and ``<task>_n``), the Natural / Specialized / Structured means, ``mean_of_group_means``
  (older papers' "Mean"), ``mean_over_tasks`` (V-PETL Bench's "Mean"), ``mean_rank`` (average rank over
  tasks among the rows of the same backbone), params, ``ppt`` (V-PETL Bench's Performance-Parameter
  Trade-off) and the costs (peak training memory, saved activations, train state, FLOPs, throughputs,
  batch-1 latency) of one device, named in ``cost_device``. A group mean is empty unless every task of the
  group has a result.
* ``fgvc.csv``: the 5 FGVC sets, their mean, params, ``ppt``, costs. ``embedded.csv``: the embedded tasks.
* ``<table>_max_test.csv``: the same tables from each run's best evaluated epoch (``max_eval_accuracy``: the
  "max test accuracy over checkpoints" several sources print), never the headline.
* Rows are keyed by backbone x method x method setting x ``recipe`` (``configs/experiment/``; empty without
  one); ``params_M`` is the mean over tasks of each task's count (per-task settings differ), as papers print.
* ``vtab1k_vs_reference.csv`` / ``fgvc_vs_reference.csv``: ours, the published number and ours - paper
  per task, group and mean (:mod:`peftbench.results.reference`), only on the same backbone.
* ``significance.csv``: per pair of rows of one backbone and table, a Wilcoxon signed-rank test over the
  tasks both have and per task a t-test over seeds, with the tasks or seeds each rests on
  (:mod:`peftbench.results.statistics`).
* ``reproduction.md``: per reference row, the command that reproduces it, what differs from its source, and
  ours beside the paper's (:mod:`peftbench.results.reproduction`).
* ``costs.csv``: the cost columns per backbone x method x setting x suite x device (costs are never averaged
  over devices).
* ``pareto.csv``: accuracy vs trainable parameters and vs peak training memory fronts
  (:mod:`peftbench.results.tradeoffs`).
* with plots on, ``plots/*.png`` + ``plots/*.csv`` (:mod:`peftbench.results.plots`) and ``summary.md``.
* with the page on, ``index.html``: the tables sortable and filterable, the heat map of ours minus the paper
  and the accuracy-vs-cost plots, self-contained (:mod:`peftbench.results.page`).

Only ``final``-protocol runs with status ``success`` enter the suite tables. Rows are keyed by backbone,
so runs on different backbones are never averaged together. When a (row, task) has finished runs of
more than one setting (e.g. two learning rates), the most recently finished setting is used and the
others are named in ``problems.csv``: results are never silently averaged across settings. Runs tuned by
peftbench-tune (a ``tuning`` block) form one row per method, search and budget whatever each task selected
(every seed of a task ran the one selected setting); their searched method options read ``tuned``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from peftbench.identity import RUN_DIR_RE, method_setting, setting_hash
from peftbench.records import PRUNED_STATUS, RESULT_FILE, RUNNING_STATUS, RecordError, RunRecord, read_record
from peftbench.results.page import require_plotly, write_page
from peftbench.results.plots import require_matplotlib
from peftbench.results.reference import SUITE_TASKS, compare, group_means, load_reference, ppt
from peftbench.results.reproduction import write_reproduction
from peftbench.results.statistics import ci95_half_width, mean_rank, significance, too_few_seeds
from peftbench.results.suites import FGVC_TASKS, VTAB_GROUPS, VTAB_TASKS
from peftbench.results.tradeoffs import pareto_table

ROW_KEYS = ["backbone", "method", "method_setting", "recipe"]
# the two numbers a suite table can hold: the last epoch's (the headline) and the best evaluated epoch's
# ("max test accuracy over checkpoints", which NOAH, FacT, RepAdapter, SSF and V-PETL's re-runs report)
METRICS = {"accuracy": "", "max_eval_accuracy": "_max_test"}
IN_PROGRESS = "in_progress"  # how problems.csv lists runs not finished yet
# the epoch checkpoint's metadata file (peftbench.engine.checkpoint.RESUME_META; not imported: no torch here)
RESUME_META = "resume.json"
# measured cost columns carried into the suite tables: (table column, run column, aggregation); they are taken
# from the runs of one device (`cost_device`), and costs.csv has them for every device
COST_COLUMNS = (
    ("peak_train_mem_mb", "peak_train_mem_mb", "max"),
    ("saved_activation_mb", "saved_activation_mb", "mean"),
    ("train_state_mb", "train_state_mb", "mean"),
    ("forward_gflops", "forward_gflops", "mean"),
    ("train_step_gflops", "train_step_gflops", "mean"),
    ("train_img_s", "train_img_s", "mean"),
    ("infer_img_s", "infer_img_s", "mean"),
    ("latency_b1_ms", "latency_b1_ms", "mean"),
)


def _costs(runs: pd.DataFrame) -> dict[str, Any]:
    """The cost columns over ``runs`` (one device's)."""
    row: dict[str, Any] = {}
    for column, source, how in COST_COLUMNS:
        values = pd.to_numeric(runs[source], errors="coerce") if source in runs else pd.Series([], dtype=float)
        row[column] = getattr(values, how)() if values.notna().any() else None
    return row


def cost_table(ok: pd.DataFrame) -> pd.DataFrame:
    """``costs.csv``: the cost columns per backbone x method x setting x suite x device, with the run count."""
    rows = []
    keys = [*ROW_KEYS, "suite", "device"]
    for key, part in ok.groupby([k for k in keys if k in ok], sort=True, dropna=False):
        rows.append({**dict(zip(keys, key, strict=True)), "runs": len(part), **_costs(part)})
    return pd.DataFrame(rows)


# trainer keys of a schedule summary: (key, label, shown when 0)
SCHEDULE_KEYS = (("lr", "lr", True), ("weight_decay", "wd", True), ("batch_size", "bs", True), ("epochs", "ep", True),
               ("warmup_epochs", "warmup", True), ("label_smoothing", "ls", False), ("grad_clip", "clip", False))


def schedule(cfg: dict[str, Any]) -> str:
    """A run's training schedule in one line: the optimizer, then ``lr``, ``wd``, ``bs``, ``ep``, ``warmup`` and
    label smoothing / gradient clipping when set (``adamw lr 0.005 wd 0.0001 bs 32 ep 2 warmup 0``)."""
    trainer = cfg.get("trainer") or {}
    parts = [str((cfg.get("optim") or {}).get("name", "?"))]
    for key, label, always in SCHEDULE_KEYS:
        value = trainer.get(key)
        if value is not None and (always or value):
            parts.append(f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}")
    return " ".join(parts)


def _flatten(record: RunRecord, path: Path) -> dict[str, Any]:
    """One runs.csv row: the record's top-level keys and scalar metrics, and the keys that group its runs."""
    res = record.to_dict()
    cfg = record.provenance.config
    method_block = cfg.get("method", {})
    if record.tuning is not None:
        # a tuned method is one row over tasks, whatever each task selected: its searched options show as
        # "tuned" with the search and budget (runs tuned otherwise, or not at all, are other rows)
        tuned = {k.partition(".")[2] for k in record.tuning.selected if k.startswith("method.")}
        method_block = {k: ("tuned" if k in tuned else v) for k, v in method_block.items()}
        method_block["tuned"] = f"{record.tuning.search}, budget {record.tuning.budget}"
    row = {k: v for k, v in res.items()
           if k not in ("config", "metrics", "versions", "normalization", "per_task", "adjustments")}
    row["method_setting"] = method_setting(method_block)
    recipe = cfg.get("recipe")
    row["recipe"] = str(recipe.get("name", "")) if isinstance(recipe, dict) else ""
    row["per_task_source"] = record.per_task.source if record.per_task is not None else ""
    # the same weights path with other contents is another setting: the recorded digest, not today's file
    row["setting_hash"] = setting_hash(cfg, record.identity.backbone_weights_sha256, record.identity.precision)
    row["method_options"] = json.dumps({k: v for k, v in method_block.items() if k not in ("name", "label")},
                                       sort_keys=True)
    row["schedule"] = schedule(cfg)
    for key, value in record.metrics.to_dict().items():
        if not isinstance(value, (list, dict)):
            row[key] = value
    if record.status == "success" and "max_eval_accuracy" not in row:
        # runs from before the record had it: the best periodic evaluation where there were some, else the only
        # evaluation, the last epoch's
        row["max_eval_accuracy"] = row.get("max_eval_accuracy_during_training", row.get("accuracy"))
    row["result_path"] = str(path)
    return row


def _unfinished_run_dirs(runs_root: Path) -> list[Path]:
    """Run folders (``<protocol>-seed<seed>-<hash8>``) that hold no ``result.json`` yet."""
    return sorted(p for p in runs_root.rglob("*") if p.is_dir() and RUN_DIR_RE.match(p.name)
                  and not (p / RESULT_FILE).exists())


def _saved_epoch(run_folder: Path) -> int | None:
    """The epoch of a resumable checkpoint in ``run_folder`` (``None`` when there is none or it is unreadable)."""
    try:
        return int(json.loads((run_folder / RESUME_META).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _unfinished_problem(r: pd.Series) -> dict[str, str]:
    """The problems.csv row of a run that did not succeed: in progress, resumable, failed or diverged."""
    message = r.get("message", "")
    message = "" if pd.isna(message) else str(message)
    epoch = _saved_epoch(Path(r["result_path"]).parent)
    if r["status"] == RUNNING_STATUS:
        where = f" (checkpoint after epoch {epoch})" if epoch else ""
        return {"result_path": r["result_path"], "status": IN_PROGRESS, "message": f"running{where}"}
    if r["status"] == "failed" and epoch:
        return {"result_path": r["result_path"], "status": IN_PROGRESS,
                "message": f"interrupted after epoch {epoch} with a checkpoint; relaunch the same command to "
                           f"resume it ({message})"}
    return {"result_path": r["result_path"], "status": r["status"], "message": message}


def _embedded_groups(runs: pd.DataFrame) -> dict[str, tuple[str, ...]] | None:
    """VTAB groups of the embedded tasks in ``runs``, from the ``group`` each run recorded (``None`` when a
    task's runs name no group, or more than one)."""
    groups: dict[str, tuple[str, ...]] = {}
    for task, part in sorted(runs.groupby("task")):
        named = set(part["group"].dropna()) if "group" in part else set()
        if len(named) != 1 or next(iter(named)) not in VTAB_GROUPS:
            return None
        group = next(iter(named))
        groups[group] = (*groups.get(group, ()), task)
    return {g: groups[g] for g in VTAB_GROUPS if g in groups}


def collect_runs(results_dir: str | Path) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Read every ``runs/**/result.json``.

    Unreadable or partial JSONs are returned as problems (status ``unreadable``, with the reason);
    runs still in progress (``status: running``, or a run folder without ``result.json``) are returned
    as problems with status ``in_progress`` and, when they have a JSON, also as rows of ``runs.csv``.
    """
    rows, problems = [], []
    runs_root = Path(results_dir, "runs")
    for path in sorted(runs_root.rglob(RESULT_FILE)):
        try:
            record = read_record(path)
        except OSError as exc:
            problems.append({"result_path": str(path), "status": "unreadable", "message": f"{type(exc).__name__}: {exc}"})
            continue
        except RecordError as exc:
            problems.append({"result_path": str(path), "status": "unreadable", "message": str(exc)})
            continue
        rows.append(_flatten(record, path))
    for folder in _unfinished_run_dirs(runs_root):
        problems.append({"result_path": str(folder / RESULT_FILE), "status": IN_PROGRESS,
                         "message": "run folder without result.json: starting, or stopped before its first record"})
    return pd.DataFrame(rows), problems


def _suite_table(ok: pd.DataFrame, tasks: tuple[str, ...], groups: dict[str, tuple[str, ...]] | None,
                 problems: list[dict[str, str]], metric: str = "accuracy") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean/std/ci95 over seeds per task, one row per backbone x method x method setting x recipe.

    Rows are keyed by backbone, so runs on different backbones are never averaged together. ``metric`` is the
    run column averaged (``accuracy`` or ``max_eval_accuracy``); superseded settings are reported once, for
    the headline table.

    Returns:
        The table, and the runs it averaged (the chosen setting of each row and task).
    """
    out_rows = []
    averaged = []
    for key, part in ok.groupby(ROW_KEYS, sort=True):
        row: dict[str, Any] = dict(zip(ROW_KEYS, key, strict=True))
        row["family"] = part["family"].iloc[0]
        row["subfamily"] = part["subfamily"].iloc[0]
        row["method_options"] = part["method_options"].iloc[0]
        row["schedule"] = None  # the schedules of the runs averaged (filled below)
        used = []
        for task in tasks:
            runs = part[part["task"] == task]
            if runs.empty:
                row[task] = row[f"{task}_std"] = row[f"{task}_ci95"] = None
                row[f"{task}_n"] = 0
                continue
            latest = runs.sort_values("finished_at")["setting_hash"].iloc[-1]
            for other in sorted(set(runs["setting_hash"]) - {latest}) if metric == "accuracy" else ():
                problems.append({
                    "result_path": ";".join(runs[runs["setting_hash"] == other]["result_path"]),
                    "status": "superseded",
                    "message": f"{'/'.join(map(str, key))} on {task}: setting {other} not averaged in; "
                               f"the table uses the most recent setting {latest}",
                })
            chosen = runs[runs["setting_hash"] == latest]
            used.append(chosen)
            acc = chosen[metric].astype(float)
            row[task] = acc.mean()
            row[f"{task}_std"] = acc.std(ddof=0) if len(acc) > 1 else 0.0
            row[f"{task}_ci95"] = ci95_half_width(acc.tolist())
            row[f"{task}_n"] = len(acc)
        row.update(group_means({t: row[t] for t in tasks}, groups, tasks))
        present = [row[t] for t in tasks if row[t] is not None]
        row["mean_over_present_tasks"] = sum(present) / len(present) if present else None
        row["tasks_present"] = len(present)
        chosen_runs = pd.concat(used)
        # the mean over tasks of each task's count, as papers print "Params" for per-task settings
        per_task = chosen_runs.groupby("task")[["trainable_params_without_head", "trainable_params"]].mean()
        row["params_M"] = per_task["trainable_params_without_head"].mean() / 1e6
        row["params_with_head_M"] = per_task["trainable_params"].mean() / 1e6
        row["trainable_percent"] = (chosen_runs.groupby("task")["trainable_percent"].mean().mean()
                                    if "trainable_percent" in chosen_runs else None)
        # V-PETL Bench's PPT takes the plain mean over all tasks and the params without the head
        row["ppt"] = ppt(row["mean_over_tasks"], row["params_M"] * 1e6)
        row["schedule"] = "; ".join(sorted(set(chosen_runs["schedule"].dropna().astype(str)))) or None
        averaged.append(chosen_runs)
        # costs from one device, never mixed: the one most of the row's runs ran on (costs.csv has every device)
        devices = chosen_runs["device"].value_counts() if "device" in chosen_runs else pd.Series([], dtype=int)
        row["cost_device"] = devices.index[0] if len(devices) else None
        row.update(_costs(chosen_runs[chosen_runs["device"] == row["cost_device"]] if len(devices) else chosen_runs))
        out_rows.append(row)
    table = pd.DataFrame(out_rows)
    table.insert(table.columns.get_loc("tasks_present") + 1, "mean_rank", mean_rank(table, tasks))
    return table, pd.concat(averaged)


@dataclasses.dataclass
class Leaderboard:
    """What one build produced: the files written and the counts the command line reports."""

    written: dict[str, Path]
    valid_runs: int
    in_progress: int
    unreadable: list[dict[str, str]]
    backbones: dict[str, list[str]]  # suite table name -> the backbones that have rows in it
    # one line per suite table whose ci95 cells are empty for want of a second seed (statistics.too_few_seeds)
    too_few_seeds: list[str] = dataclasses.field(default_factory=list)


def build(results_dir: str | Path, out_dir: str | Path | None = None, reference_dir: str | Path | None = None,
          plots: bool = False, page: bool = False) -> Leaderboard:
    """Write every leaderboard table (and, with ``plots``, the figures and the summary page).

    Args:
        results_dir: folder holding ``runs/``.
        out_dir: output folder (default ``<results_dir>/leaderboard``).
        reference_dir: folder of published tables (default ``<results_dir>/reference``; a missing
            folder means no comparison tables).
        plots: also write ``plots/*.png`` with the CSV of each figure's data and ``summary.md``
            (needs matplotlib, the ``plots`` extra).
        page: also write ``index.html``, the interactive page (:mod:`peftbench.results.page`, needs plotly).

    Returns:
        A :class:`Leaderboard`.
    """
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir / "leaderboard"
    reference = load_reference(reference_dir if reference_dir is not None else results_dir / "reference")
    if plots:
        require_matplotlib()  # fail before writing anything
    if page:
        require_plotly()
    out.mkdir(parents=True, exist_ok=True)
    runs, problems = collect_runs(results_dir)
    unreadable = [dict(p) for p in problems if p["status"] == "unreadable"]
    written: dict[str, Path] = {}
    runs.to_csv(out / "runs.csv", index=False)
    written["runs"] = out / "runs.csv"
    tables: dict[str, tuple[str, pd.DataFrame]] = {}
    tests: list[pd.DataFrame] = []
    notes: list[str] = []
    versus_tables: dict[str, pd.DataFrame] = {}
    valid = 0
    if not runs.empty:
        for _, r in runs[~runs["status"].isin(["success", PRUNED_STATUS])].iterrows():  # pruned: a tune outcome
            problems.append(_unfinished_problem(r))
        valid = int((runs["status"] != RUNNING_STATUS).sum())
        ok = runs[(runs["status"] == "success") & (runs["protocol"] == "final")]
        suites = {"vtab1k": ("vtab", VTAB_TASKS, VTAB_GROUPS), "fgvc": ("fgvc", FGVC_TASKS, None)}
        embedded_tasks = tuple(sorted(ok[ok["suite"] == "embedded"]["task"].unique()))
        if embedded_tasks:
            suites["embedded"] = ("embedded", embedded_tasks, _embedded_groups(ok[ok["suite"] == "embedded"]))
        for name, (suite, tasks, groups) in suites.items():
            part = ok[ok["suite"] == suite]
            if part.empty:
                continue
            table, averaged = _suite_table(part, tasks, groups, problems)
            best, _ = _suite_table(part, tasks, groups, problems, metric="max_eval_accuracy")
            best.to_csv(out / f"{name}_max_test.csv", index=False)
            written[f"{name}_max_test"] = out / f"{name}_max_test.csv"
            note = too_few_seeds(name, averaged, ROW_KEYS)
            if note:
                notes.append(note)
            tested = significance(table, averaged, tasks, ROW_KEYS)
            tested.insert(0, "table", name)
            if not tested.empty:
                tests.append(tested)
            table.to_csv(out / f"{name}.csv", index=False)
            written[name] = out / f"{name}.csv"
            tables[name] = (suite, table)
            if suite in SUITE_TASKS:
                versus = compare({"last": table, "max_test": best}, reference, suite)
                versus_tables[suite] = versus
                versus.to_csv(out / f"{name}_vs_reference.csv", index=False)
                written[f"{name}_vs_reference"] = out / f"{name}_vs_reference.csv"
        costs = cost_table(ok)
        if not costs.empty:
            costs.to_csv(out / "costs.csv", index=False)
            written["costs"] = out / "costs.csv"
        if tests:
            pd.concat(tests).to_csv(out / "significance.csv", index=False)
            written["significance"] = out / "significance.csv"
        fronts = pareto_table(tables)
        if not fronts.empty:
            fronts.to_csv(out / "pareto.csv", index=False)
            written["pareto"] = out / "pareto.csv"
    if not reference.empty:
        written["reproduction"] = write_reproduction(out / "reproduction.md", reference, versus_tables)
    pd.DataFrame(problems, columns=["result_path", "status", "message"]).to_csv(out / "problems.csv", index=False)
    written["problems"] = out / "problems.csv"
    in_progress = sum(p["status"] == IN_PROGRESS for p in problems)
    if plots:
        from peftbench.results.plots import write_plots
        from peftbench.results.report import write_summary

        figures = write_plots(tables, reference, out / "plots")
        written.update(figures)
        written["summary"] = write_summary(out, tables, reference, figures, problems, valid)
    if page:
        written["page"] = write_page(out, reference)
    backbones = {name: sorted(set(t["backbone"])) for name, (_, t) in tables.items()}
    return Leaderboard(written, valid, in_progress, unreadable, backbones, notes)
