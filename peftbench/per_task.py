"""Per-task values: one mechanism for any config key, resolved once the dataset is known.

A config (usually a paper recipe in ``configs/experiment/``) may hold a ``per_task`` table::

    per_task:
      vtab:
        cifar: {trainer.lr: 5.0e-3, method.scale: 0.1}
      fgvc:
        cub: {trainer.lr: 0.025}
      fallback:
        values: {}
        note: "tasks the source does not list run with the recipe's shared values"

:func:`resolve_per_task` takes the table out of the composed config and writes the values of the run's task
(``dataset.suite`` / ``dataset.name``) into it, so the recorded ``config`` holds resolved values only. A key
given on the command line wins over the table. A task the table does not list takes ``fallback.values`` and the
run says so. Every table is checked when it is loaded: an unknown suite or task, or a key the config does not
have, is a :class:`~peftbench.errors.ConfigError` for every task, not only the one being run.

No torch here: ``peftbench-train ... dry_run=true`` resolves a recipe without loading anything heavy.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from peftbench.errors import ConfigError

PER_TASK = "per_task"
# keys of the composed config that steer the command, not the run (never recorded)
COMMAND_KEYS = ("hydra", "dry_run")
FALLBACK = "fallback"
FALLBACK_KEYS = ("values", "note")


@dataclasses.dataclass
class PerTaskResolution:
    """What the per-task table did to one run (the result JSON's ``per_task`` block).

    Attributes:
        source: ``<suite>/<task>`` (the table listed the task), ``fallback`` (it did not) or ``none``
            (the config has no table).
        values: the dotted keys the table set, with the values written into the config.
        command_line: table keys left as the command line set them (the command line wins).
        note: the fallback's note when the fallback was used.
    """

    source: str
    values: dict[str, Any]
    command_line: list[str]
    note: str | None = None

    def describe(self) -> str:
        """One line for the run's output."""
        if self.source == "none":
            return "no per-task table"
        keys = ", ".join(f"{k}={v!r}" for k, v in self.values.items()) or "no values"
        kept = f"; kept from the command line: {', '.join(self.command_line)}" if self.command_line else ""
        if self.source == FALLBACK:
            return f"task not in the per-task table, fallback used ({keys}){kept}. {self.note or ''}".rstrip()
        return f"per-task values of {self.source}: {keys}{kept}"


# config groups whose choice on the command line replaces the block's per-task values: another method has other
# options. Choosing another file of any other group (backbone=, dataset=, trainer=, optim=) keeps them.
REPLACING_GROUPS = ("method",)


def command_line_keys(overrides: Iterable[str], groups: Iterable[str] = ()) -> set[str]:
    """Dotted keys a list of Hydra overrides sets (``trainer.lr=0.1``, ``+a.b=1``, ``~c`` -> their keys).

    Args:
        overrides: the command line's overrides.
        groups: the config groups (``backbone``, ``dataset``, ...): choosing one of their files sets no per-task
            key, except for :data:`REPLACING_GROUPS`.
    """
    skip = set(groups) - set(REPLACING_GROUPS)
    keys = set()
    for item in overrides:
        key, sep, _ = item.partition("=")
        key = key.lstrip("+~").strip()
        if key and (sep or item.startswith("~")) and key not in skip and "/" not in key:
            keys.add(key)
    return keys


def _has(cfg: Mapping[str, Any], dotted: str) -> bool:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[leaf] = copy.deepcopy(value)


def _overridden(key: str, command_line: set[str]) -> bool:
    """True when the command line set ``key`` itself or a block above it (``method.rank`` under ``method``)."""
    parts = key.split(".")
    return any(".".join(parts[: i + 1]) in command_line for i in range(len(parts)))


def check_table(table: Any, cfg: Mapping[str, Any], suite_tasks: Mapping[str, Iterable[str]]) -> None:
    """Raise :class:`ConfigError` when a ``per_task`` table is malformed (see the module docstring).

    Args:
        table: the ``per_task`` value of a composed config.
        cfg: the composed config without the table (its keys are what the table may set).
        suite_tasks: suite -> the task names of ``configs/dataset/<suite>/``.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(f"per_task must be a mapping suite -> task -> {{key: value}}, got {type(table).__name__}")
    for suite, tasks in table.items():
        if suite == FALLBACK:
            _check_fallback(tasks, cfg)
            continue
        if suite not in suite_tasks:
            raise ConfigError(
                f"per_task names the suite {suite!r}; valid suites: {', '.join(sorted(suite_tasks))} "
                f"(and '{FALLBACK}')"
            )
        if not isinstance(tasks, Mapping):
            raise ConfigError(f"per_task.{suite} must map task names to {{key: value}}, got {tasks!r}")
        known = set(suite_tasks[suite])
        for task, values in tasks.items():
            if task not in known:
                raise ConfigError(
                    f"per_task.{suite} names the task {task!r}, which is not a {suite} task; valid tasks: "
                    f"{', '.join(sorted(known))}"
                )
            _check_values(values, cfg, f"per_task.{suite}.{task}")


def _check_fallback(fallback: Any, cfg: Mapping[str, Any]) -> None:
    if not isinstance(fallback, Mapping) or set(fallback) - set(FALLBACK_KEYS):
        raise ConfigError(f"per_task.{FALLBACK} must be {{values: {{key: value}}, note: text}}, got {fallback!r}")
    _check_values(fallback.get("values") or {}, cfg, f"per_task.{FALLBACK}.values")


def _check_values(values: Any, cfg: Mapping[str, Any], where: str) -> None:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must map dotted config keys to values, got {values!r}")
    for key in values:
        if not isinstance(key, str) or not _has(cfg, key):
            raise ConfigError(
                f"{where} sets {key!r}, which is not a key of the composed config; per-task keys are dotted "
                "paths of existing keys, e.g. trainer.lr, backbone.drop_path_rate, method.scale"
            )


def resolve_per_task(cfg: Mapping[str, Any], suite_tasks: Mapping[str, Iterable[str]],
                     command_line: Iterable[str] = ()) -> tuple[dict[str, Any], PerTaskResolution]:
    """The config with its ``per_task`` table resolved for its dataset, and what was resolved.

    Args:
        cfg: a composed plain config (with ``dataset.suite`` and ``dataset.name``).
        suite_tasks: suite -> task names (checks every table entry).
        command_line: dotted keys the command line set; they keep their value.

    Returns:
        A new config without ``per_task`` and the :class:`PerTaskResolution`.
    """
    out = copy.deepcopy(dict(cfg))
    table = out.pop(PER_TASK, None)
    if table is None:
        return out, PerTaskResolution("none", {}, [])
    check_table(table, out, suite_tasks)
    dataset = out.get("dataset") or {}
    suite, task = dataset.get("suite"), dataset.get("name")
    entry = (table.get(suite) or {}).get(task) if suite != FALLBACK else None
    if entry is not None:
        source, values, note = f"{suite}/{task}", dict(entry), None
    else:
        fallback = table.get(FALLBACK) or {}
        source, values = FALLBACK, dict(fallback.get("values") or {})
        note = fallback.get("note") or "the per-task table does not list this task and states no fallback note"
    keys = set(command_line)
    kept = sorted(k for k in values if _overridden(k, keys))
    applied = {k: v for k, v in values.items() if k not in kept}
    for key, value in applied.items():
        _set(out, key, value)
    return out, PerTaskResolution(source, applied, kept, note)


def fit_to_run_length(plain: dict[str, Any]) -> list[str]:
    """Shorten, in place, what a shortened run cannot hold, and say so (quick checks of a recipe just run).

    A warmup longer than the cosine part is capped at it; evaluation epochs past the run's last epoch are dropped.
    """
    trainer = plain.get("trainer") or {}
    epochs, adjustments = trainer.get("epochs"), []
    if not isinstance(epochs, int) or epochs < 1:
        return adjustments  # the typed config reports it
    warmup = trainer.get("warmup_epochs")
    if isinstance(warmup, int) and warmup > epochs:
        trainer["warmup_epochs"] = epochs
        adjustments.append(f"trainer.warmup_epochs {warmup} -> {epochs}: capped at trainer.epochs")
    total = epochs + (trainer.get("cooldown_epochs") or 0)
    evals = trainer.get("eval_epochs")
    if isinstance(evals, list) and any(isinstance(e, int) and e >= total for e in evals):
        kept = [e for e in evals if not (isinstance(e, int) and e >= total)]
        trainer["eval_epochs"] = kept
        adjustments.append(f"trainer.eval_epochs {evals} -> {kept}: epochs past the run's last ({total - 1}) dropped")
    return adjustments


@dataclasses.dataclass
class ResolvedConfig:
    """A composed config as its run records it, and what resolving it did."""

    config: dict[str, Any]  # per-task values written in, no table, no command keys
    per_task: PerTaskResolution
    adjustments: list[str]
    steering: dict[str, Any]  # the command keys (dry_run, ...) taken out


def resolve_run_config(plain: Mapping[str, Any], command_line: Iterable[str] = ()) -> ResolvedConfig:
    """The one resolution of a composed config into the ``config`` a run records (the run spine and the SLURM
    launcher, which must find a run's folder before the run exists, both call it).

    Args:
        plain: the composed plain config (not changed).
        command_line: the overrides it was composed with; their keys win over per-task values.
    """
    from peftbench.paths import config_groups, suite_tasks

    config = copy.deepcopy(dict(plain))
    steering = {k: config.pop(k, None) for k in COMMAND_KEYS}
    config, per_task = resolve_per_task(config, suite_tasks(), command_line_keys(command_line, config_groups()))
    adjustments = fit_to_run_length(config)
    return ResolvedConfig(config, per_task, adjustments, steering)
