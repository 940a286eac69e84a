"""Export of peftbench-tune's selections: a recipe per method (``experiment/<name>/<method>.yaml``, the format of
the ``experiment`` group with a ``per_task`` table) and ``tuned.csv`` (one row per method x task). No torch."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from peftbench.atomic import write_text_atomic
from peftbench.identity import NON_SEMANTIC_KEYS
from peftbench.tuning.space import lookup

# group choices a recipe states in its defaults (dataset is per task; logger is not part of what a run computes)
RECIPE_GROUPS = ("backbone", "method", "optim", "trainer")
NOT_SHARED = (*NON_SEMANTIC_KEYS, "seed", "protocol", "dataset", "sweep")


@dataclasses.dataclass
class Selected:
    """One study's outcome as the export needs it."""

    label: str  # the method as results name it (a preset's label, else the method)
    suite: str
    task: str
    combo: list[str]  # the setting's command-line overrides
    base: dict[str, Any]  # its composed config
    values: dict[str, Any]  # the selected knob values (dotted key -> value)


def _key(override: str) -> tuple[str, str, str]:
    """``(prefix, key, value)`` of a ``[+~]key=value`` override."""
    prefix = override[: len(override) - len(override.lstrip("+~"))]
    key, _, value = override.lstrip("+~").partition("=")
    return prefix, key, value


def _skipped(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NOT_SHARED)


def shared_part(sel: Selected) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The recipe's defaults (``override /<group>: <option>``) and shared values from a setting's overrides."""
    defaults: dict[str, str] = {}
    values: dict[str, Any] = {}
    for override in sel.combo:
        prefix, key, value = _key(override)
        if prefix == "~" or _skipped(key):
            continue
        if key in RECIPE_GROUPS:
            defaults[key] = value
        else:
            found, resolved = lookup(sel.base, key)
            values[key] = resolved if found else value
    defaults.setdefault("method", sel.base["method"].get("label") or sel.base["method"]["name"])
    return [{f"override /{g}": defaults[g]} for g in RECIPE_GROUPS if g in defaults], values


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in sorted(flat.items()):
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def recipe(name: str, label: str, selections: Sequence[Selected], info: Mapping[str, Any]) -> dict[str, Any] | str:
    """The recipe of one method's selections (one per task), or why it cannot be written.

    Args:
        name: the recipe group below ``experiment/`` (``tune.name``).
        label: the method.
        selections: its studies (one per task; their shared settings must agree).
        info: search, budget, seeds, journal, ... for the ``recipe`` block.
    """
    parts = [shared_part(s) for s in selections]
    if any(p != parts[0] for p in parts[1:]):
        return ("its tasks were tuned with different settings besides the task (a list on the command line other "
                "than method / dataset / seed); tune them in separate commands with separate tune.name values")
    per_task: dict[str, dict[str, dict[str, Any]]] = {}
    for s in selections:
        per_task.setdefault(s.suite, {})[s.task] = dict(s.values)
    defaults, shared = parts[0]
    out: dict[str, Any] = {"defaults": defaults}
    out["recipe"] = {
        "name": f"{name}/{label}",
        "source": f"peftbench-tune, study journal {info['journal']}",
        "reports": "last",
        "seeds": list(info["seeds"]),
        "deviations": [],
        "tuned": {k: info[k] for k in ("search", "budget", "tune_seeds", "criterion", "max_params")},
    }
    out.update(_nest(shared))
    per_task["fallback"] = {"values": {}, "note": "tasks not tuned here run with the shared values above and "
                                                  "the method's defaults"}
    out["per_task"] = per_task
    return out


def _merged(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the per-task entries of an earlier export of the same shared settings kept."""
    import yaml

    try:
        old = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        old = None
    if not isinstance(old, dict):
        return new

    def shared(r: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r.items() if k not in ("recipe", "per_task")}

    if shared(old) != shared(new) or old.get("recipe", {}).get("tuned") != new["recipe"]["tuned"]:
        backup = path.with_name(f"{path.name}.bak-{dt.datetime.now():%Y%m%d-%H%M%S}")
        path.rename(backup)
        print(f"[peftbench-tune] {path} was exported from other settings: moved to {backup}")
        return new
    per_task = {suite: dict(tasks) for suite, tasks in (old.get("per_task") or {}).items() if suite != "fallback"}
    for suite, tasks in new["per_task"].items():
        if suite != "fallback":
            per_task.setdefault(suite, {}).update(tasks)
    per_task["fallback"] = new["per_task"]["fallback"]
    return {**new, "per_task": per_task}


def write_recipes(folder: Path, name: str, selections: Sequence[Selected], info: Mapping[str, Any]) -> list[Path]:
    """Write ``<folder>/experiment/<name>/<method>.yaml`` for every method of ``selections``."""
    import yaml

    written = []
    by_label: dict[str, list[Selected]] = {}
    for s in selections:
        by_label.setdefault(s.label, []).append(s)
    for label, group in by_label.items():
        content = recipe(name, label, group, info)
        if isinstance(content, str):
            print(f"[peftbench-tune] no recipe written for {label}: {content}")
            continue
        path = folder / "experiment" / name / f"{label}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        content = _merged(path, content)
        header = (
            "# @package _global_\n"
            f"# {label} tuned by peftbench-tune ({info['search']}, {info['budget']} trials per task, selected on "
            f"{info['criterion']}).\n"
            f"# Rerun: peftbench-train experiment={name}/{label} dataset=<suite>/<task> "
            f"'hydra.searchpath=[file://{folder.resolve()}]'\n"
            f"# (or copy this file to configs/experiment/{name}/). per_task: the selected values of each task.\n"
        )
        write_text_atomic(path, header + yaml.safe_dump(content, sort_keys=False))
        written.append(path)
    return written


def write_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``tuned.csv``: one row per study (method x task x setting), the columns of the first row."""
    if rows:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(path, text.getvalue())
    return path
