"""The Optuna side of peftbench-tune: the study journal, samplers, the pruner, and a trial run's reporter.

peftbench-tune (the parent) is the only process that asks for and tells trials. Each trial is one run per tune
seed, launched like any multirun job; a run finds its trial through the ``trial:`` block of its config,
reports its per-epoch validation accuracy as the trial's intermediate values and stops when the pruner says so
(:class:`RunPruned`; the run is recorded with status ``pruned``). Several runs report into one journal at once:
Optuna's :class:`~optuna.storages.JournalStorage` on a file with an ``open(O_EXCL)`` lock, which works on a
shared (NFS) filesystem, where SQLite does not.

Intermediate steps interleave the seeds of a trial: step = epoch x seeds + seed index, so the pruner compares a
run with the other trials' runs of the same seed at the same epoch.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from peftbench.errors import ConfigError, PeftbenchError

SEARCHES = ("tpe", "grid", "random")
PRUNERS = ("median", "none")
INSTALL_HINT = "pip install 'peftbench[sweeps]' (optuna>=4)"
PRUNED_ATTR = "pruned"  # trial user attribute: which seed run stopped the trial (its siblings stop too)


@dataclasses.dataclass
class TrialConfig:
    """The ``trial:`` block of ``configs/train.yaml``: set by peftbench-tune on its trial runs (not in the hash).

    Attributes:
        storage: the study journal file (every job must see it: a shared filesystem).
        study: the study's name in the journal.
        number: the trial number this run belongs to.
        seed_index: this run's position among the trial's tune seeds.
        seeds: how many tune seeds each trial runs.
    """

    storage: str | None = None
    study: str | None = None
    number: int | None = None
    seed_index: int = 0
    seeds: int = 1

    @property
    def active(self) -> bool:
        return self.storage is not None

    def __post_init__(self) -> None:
        given = [self.storage is not None, self.study is not None, self.number is not None]
        if any(given) and not all(given):
            raise ConfigError("trial.storage, trial.study and trial.number go together (peftbench-tune sets them)")
        if self.seeds < 1 or not 0 <= self.seed_index < self.seeds:
            raise ConfigError(f"trial.seed_index={self.seed_index} must be in [0, trial.seeds={self.seeds})")


class RunPruned(Exception):
    """Raised from a trial run's per-epoch report when its trial is to stop (the run is recorded as pruned)."""

    def __init__(self, message: str, history: list[dict[str, float]]) -> None:
        super().__init__(message)
        self.history = history


def require_optuna() -> Any:
    """Import Optuna (>= 4), or stop with the install command."""
    try:
        import optuna
    except ImportError:
        raise PeftbenchError(f"peftbench-tune needs Optuna, which is not installed: {INSTALL_HINT}") from None
    if int(optuna.__version__.split(".")[0]) < 4:
        raise PeftbenchError(f"peftbench-tune needs Optuna >= 4, found {optuna.__version__}: {INSTALL_HINT}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def journal_storage(path: str | Path) -> Any:
    """The Optuna journal storage in ``path`` (created when missing), locked with ``open(O_EXCL)``."""
    optuna = require_optuna()
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    except OSError as exc:
        raise ConfigError(f"cannot open the study journal {path}: {exc}; every job must see this file "
                          "(a shared filesystem)") from None
    return optuna.storages.JournalStorage(backend)


def intermediate_step(epoch: int, seed_index: int, seeds: int) -> int:
    """The intermediate step of a run's evaluation after ``epoch`` (1-based)."""
    return epoch * seeds + seed_index


def pruner_settings(kind: str, startup_trials: int, warmup_epochs: int, seeds: int) -> dict[str, Any]:
    """The pruner as stored with the study (every trial run builds its pruner from it)."""
    if kind not in PRUNERS:
        raise ConfigError(f"tune.pruner={kind!r}; valid choices: {', '.join(PRUNERS)}")
    if kind == "none":
        return {"kind": "none"}
    # evaluations after epochs 1..warmup_epochs never prune: step >= (warmup_epochs + 1) x seeds
    return {"kind": kind, "n_startup_trials": startup_trials, "n_warmup_steps": (warmup_epochs + 1) * seeds,
            "warmup_epochs": warmup_epochs}


def build_pruner(settings: Mapping[str, Any]) -> Any:
    """The Optuna pruner of :func:`pruner_settings`."""
    optuna = require_optuna()
    if settings.get("kind", "none") == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=settings["n_startup_trials"],
                                       n_warmup_steps=settings["n_warmup_steps"])


def build_sampler(search: str, seed: int, grid: Mapping[str, list[Any]] | None = None,
                  startup_trials: int = 10) -> Any:
    """A seeded sampler: TPE (multivariate, constant liar for trials in flight), random, or the grid in a seeded
    random order (``grid``: knob -> choices)."""
    optuna = require_optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                              n_startup_trials=startup_trials)
        if search == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if search == "grid":
            return _grid_sampler(optuna)(dict(grid or {}), seed=seed)
    raise ConfigError(f"search={search!r}; valid choices: {', '.join(SEARCHES)}")


def _grid_sampler(optuna: Any) -> type:
    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler without its stop at the last point: the budget ends an ask-and-tell study."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler


class TrialReporter:
    """A trial run's link to its study: per-epoch reports, and the pruner's verdict.

    Args:
        cfg: the run's ``trial:`` block.
    """

    def __init__(self, cfg: TrialConfig) -> None:
        optuna = require_optuna()
        path = Path(str(cfg.storage))
        if not path.is_file():
            raise ConfigError(f"trial.storage={path}: no study journal there; every job must see the file "
                              "peftbench-tune created (a shared filesystem)")
        storage = journal_storage(path)
        try:
            study_id = storage.get_study_id_from_name(str(cfg.study))
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(cfg.number))  # type: ignore[arg-type]
        except KeyError:
            raise ConfigError(f"trial.study={cfg.study!r} has no trial {cfg.number} in {path}") from None
        settings = storage.get_study_user_attrs(study_id).get("pruner", {"kind": "none"})
        study = optuna.load_study(study_name=cfg.study, storage=storage, pruner=build_pruner(settings),
                                  sampler=optuna.samplers.RandomSampler())
        self.cfg = cfg
        self.storage = storage
        self.trial_id = trial_id
        self.trial = optuna.trial.Trial(study, trial_id)
        self.history: list[dict[str, float]] = []
        self.reported = set(storage.get_trial(trial_id).intermediate_values)  # a resumed run repeats epochs

    def report(self, epoch: int, accuracy: float) -> None:
        """Report the validation accuracy after ``epoch``; raise :class:`RunPruned` when the trial is to stop."""
        self.history.append({"epoch": epoch, "eval_accuracy": accuracy})
        step = intermediate_step(epoch, self.cfg.seed_index, self.cfg.seeds)
        if step not in self.reported:
            self.trial.report(accuracy, step)
            self.reported.add(step)
        sibling = self.storage.get_trial_user_attrs(self.trial_id).get(PRUNED_ATTR)
        if sibling is not None:
            raise RunPruned(f"pruned: trial {self.cfg.number} was pruned by its seed run #{sibling['seed_index']} "
                            f"after epoch {sibling['epoch']}", self.history)
        if self.trial.should_prune():
            self.trial.set_user_attr(PRUNED_ATTR, {"seed_index": self.cfg.seed_index, "epoch": epoch,
                                                   "accuracy": accuracy})
            raise RunPruned(f"pruned after epoch {epoch}: validation top-1 {accuracy:.2f} is below the median of "
                            f"the study's complete trials at that epoch (trial {self.cfg.number})", self.history)

    def wrap(self, log: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        """A training-loop log callback that also reports each periodic (not final) evaluation."""

        def log_and_report(record: dict[str, Any]) -> None:
            log(record)
            if "eval_accuracy" in record and not record.get("final"):
                self.report(int(record["epoch"]), float(record["eval_accuracy"]))

        return log_and_report
