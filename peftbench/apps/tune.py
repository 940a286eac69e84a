"""Hyperparameter search by the VTAB-1k protocol with an equal budget for every method (``peftbench-tune``).

1. **plan**: one study per setting (method x dataset x the user's other lists, the seeds left out) over the
   method's search space (``configs/tune/<method>.yaml``: its own knobs plus learning rate and weight decay), each
   candidate's trainable parameters counted before it trains (``peftbench-params``' run spine, no weights or data);
2. **tune**: ``budget`` trials per study, asked from a seeded Optuna sampler (TPE, grid or random) and told by
   this process alone; a trial is one ``protocol=tune`` run (train800 -> val200; FGVC train -> val) per tune seed,
   launched as a multirun through the configured launcher; runs report per-epoch validation accuracy to the
   study and stop when the median pruner says so (recorded as ``pruned``);
3. **select** once per study: the complete trial with the highest mean validation accuracy over its seeds;
4. **final**: ``protocol=final`` (train800val200 -> test) with the selection for every seed; each final result gets
   a ``tuning`` block (the selection, every candidate, their validation accuracies); the selections are
   exported as recipes (``experiment/<name>/<method>.yaml``) and ``tuned.csv``.

The studies live in one Optuna journal in ``<results>/tune/<name>/``: the same command again continues them.
Trials left running by a kill are not asked again but rerun: their run folders resume from the epoch
checkpoint, and finished runs are read back, so no trial is lost or duplicated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peftbench.apps.tune_plan import StudyPlan, TuneOptions, canonical, fmt, plan_studies
from peftbench.config import compose
from peftbench.errors import ConfigError, PeftbenchError
from peftbench.identity import identity, run_dir
from peftbench.records import (
    PRUNED_STATUS,
    RESULT_FILE,
    RecordError,
    RunRecord,
    TuningBlock,
    read_record,
    write_record,
)
from peftbench.tuning.export import Selected, write_recipes, write_table
from peftbench.tuning.study import build_sampler, journal_storage, pruner_settings, require_optuna

FINISHED = ("success", "diverged", PRUNED_STATUS)
JOURNAL = "studies.journal"
DRILL_EXIT = 3  # tune.stop_after_trials: the exit code of the drill's stop
MAX_SHUFFLED = 100_000  # finite spaces up to this size are drawn without replacement (random, TPE's startup)


class Tuner:
    """Runs the studies of one command (see the module docstring)."""

    def __init__(self, plans: list[StudyPlan], options: TuneOptions, hydra_args: list[str], tune_dir: Path) -> None:
        self.plans, self.options, self.hydra_args, self.tune_dir = plans, options, hydra_args, tune_dir
        self.journal = (tune_dir / JOURNAL).resolve()  # the jobs may start elsewhere (SLURM)
        self.storage: Any = None
        self._configs: dict[str, dict[str, Any]] = {}
        self._records: dict[tuple[str, int], RunRecord | None] = {}
        self._counts: dict[str, dict[str, Any]] = {}
        self.told = 0  # trials finished in this launch (the drill's count)

    # -- configs, records and parameter counts of a trial's runs ----------------------------------------------
    def params_overrides(self, values: dict[str, Any]) -> list[str]:
        return [f"{k}={fmt(v)}" for k, v in values.items()]

    def run_config(self, plan: StudyPlan, values: dict[str, Any], seed: int, protocol: str = "tune") -> dict[str, Any]:
        """The composed config of one run (composed once per trial; the seed is interpolated nowhere)."""
        overrides = [*plan.combo, f"protocol={protocol}", f"seed={plan.seeds[0]}", *self.params_overrides(values),
                     *(plan.report if protocol == "tune" else [])]
        key = canonical(overrides)
        if key not in self._configs:
            from peftbench.assemble import parse_spec

            # resolved as the run resolves it (a recipe's per-task values, the command line winning), so the
            # identity of this config is the identity the run records
            self._configs[key] = parse_spec(compose(overrides), command_line=overrides).config
        cfg = json.loads(json.dumps(self._configs[key]))
        cfg["seed"] = seed
        return cfg

    def find_record(self, cfg: dict[str, Any]) -> RunRecord | None:
        """The result of the run ``cfg`` describes, found by its identity (the precision it resolved to on the
        machine that ran it may differ from this one's): finished first, then the latest started."""
        folder = run_dir(cfg.get("paths", {}).get("results_dir", "results"), cfg, "0" * 8).parent
        want = identity(cfg)
        found = []
        for path in sorted(folder.glob(f"{cfg['protocol']}-seed{cfg['seed']}-*/{RESULT_FILE}")):
            record = self._read(path)
            if record is not None and identity(record.provenance.config,
                                               weights_digest=record.identity.backbone_weights_sha256) == want:
                found.append(record)
        found.sort(key=lambda r: (r.status in FINISHED, r.finished_at or "", r.provenance.started_at))
        return found[-1] if found else None

    def _read(self, path: Path) -> RunRecord | None:
        try:
            key = (str(path), path.stat().st_mtime_ns)
        except OSError:
            return None
        if key not in self._records:
            try:
                self._records[key] = read_record(path)
            except (OSError, RecordError):
                self._records[key] = None
        return self._records[key]

    def counts(self, plan: StudyPlan, values: dict[str, Any]) -> dict[str, Any]:
        """Trainable parameters of a candidate (peftbench-params: the run spine without weights or data)."""
        from peftbench.apps.params import param_report

        cfg = self.run_config(plan, values, plan.seeds[0])
        key = canonical([cfg["backbone"], cfg["method"], cfg["dataset"]])
        if key not in self._counts:
            report = param_report(cfg)
            self._counts[key] = {k: report[k] for k in ("trainable_params", "trainable_params_without_head")}
        return self._counts[key]

    # -- one trial ---------------------------------------------------------------------------------------------
    def trial_job(self, plan: StudyPlan, values: dict[str, Any], number: int, index: int) -> list[str]:
        return [*plan.combo, "protocol=tune", f"seed={plan.seeds[index]}", *self.params_overrides(values),
                *plan.report, f"trial.storage={fmt(str(self.journal))}", f"trial.study={fmt(plan.name)}",
                f"trial.number={number}", f"trial.seed_index={index}", f"trial.seeds={len(plan.seeds)}"]

    def outcome(self, plan: StudyPlan, values: dict[str, Any], number: int) -> tuple[str, float | None,
                                                                                      list[dict[str, Any]],
                                                                                      list[list[str]]]:
        """``(state, value, runs, jobs)`` of a trial from its runs' results: ``complete`` (value: mean validation
        accuracy over the seeds, a diverged run counting 0), ``pruned``, or ``unfinished`` (jobs to launch)."""
        runs, jobs = [], []
        for index, seed in enumerate(plan.seeds):
            record = self.find_record(self.run_config(plan, values, seed))
            status = record.status if record is not None else "missing"
            runs.append({"seed": seed, "run_dir": record.provenance.run_dir if record else None, "status": status,
                         "val_accuracy": record.accuracy if record else None})
            if status not in FINISHED:
                jobs.append(self.trial_job(plan, values, number, index))
        if any(r["status"] == PRUNED_STATUS for r in runs):
            return "pruned", None, runs, []
        if jobs:
            return "unfinished", None, runs, jobs
        accs = [r["val_accuracy"] if r["status"] == "success" else 0.0 for r in runs]
        return "complete", sum(accs) / len(accs), runs, []

    def settle(self, plan: StudyPlan) -> list[tuple[int, list[list[str]]]]:
        """Tell the study every running trial whose runs have finished; return the others with their jobs."""
        optuna = require_optuna()
        pending = []
        for trial in plan.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            state, value, _, jobs = self.outcome(plan, plan.space.decode(trial.params), trial.number)
            if state == "complete":
                plan.study.tell(trial.number, value)
            elif state == "pruned":
                plan.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
            else:
                pending.append((trial.number, jobs))
                continue
            self.told += 1
        return pending

    def ask(self, plan: StudyPlan) -> list[tuple[int, list[list[str]]]]:
        """Ask up to ``batch`` new trials (while the study is under budget); a repeat of a finished trial is told
        its outcome at once (no training); return the new trials with their jobs."""
        optuna = require_optuna()
        new: list[tuple[int, list[list[str]]]] = []
        trials = plan.study.get_trials(deepcopy=False)
        while len(trials) < self.options.budget and len(new) < self.options.batch:
            seed = int(hashlib.sha256(f"{self.options.sampler_seed}:{len(trials)}".encode()).hexdigest()[:8], 16)
            grid = ({k: list(v.choices or ()) for k, v in plan.space.knobs.items()}
                    if self.options.search == "grid" else None)
            plan.study.sampler = build_sampler(self.options.search, seed, grid, self.options.startup_trials)
            self._enqueue_unvisited(plan, trials)
            trial = plan.study.ask(plan.space.distributions())
            values = plan.space.decode(trial.params)
            for key, count in self.counts(plan, values).items():
                trial.set_user_attr(key, count)
            same = next((t for t in trials if canonical(plan.space.decode(t.params)) == canonical(values)), None)
            if same is not None:
                trial.set_user_attr("duplicate_of", same.number)
            if same is not None and same.state.is_finished():
                if same.state == optuna.trial.TrialState.COMPLETE:
                    plan.study.tell(trial, same.value)
                else:
                    plan.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                self.told += 1
            elif same is None:  # a repeat of a running trial shares its runs
                new.append((trial.number, [self.trial_job(plan, values, trial.number, i)
                                           for i in range(len(plan.seeds))]))
            trials = plan.study.get_trials(deepcopy=False)
        return new

    def _enqueue_unvisited(self, plan: StudyPlan, trials: list[Any]) -> None:
        """Random draws without replacement on a finite space: TPE's startup trials and random search take the
        grid's points in a seeded random order while unvisited ones remain (a repeat would teach nothing)."""
        optuna = require_optuna()
        search, size = self.options.search, plan.space.size()
        if size is None or size > MAX_SHUFFLED or search == "grid" or (
                search == "tpe" and len(trials) >= self.options.startup_trials):
            return
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return  # one enqueued before a kill: the next ask takes it
        seen = {canonical(t.params) for t in trials}
        order = plan.space.grid()
        random.Random(self.options.sampler_seed).shuffle(order)
        point = next((p for p in order if canonical(p) not in seen), None)
        if point is not None:
            plan.study.enqueue_trial(point)

    # -- the loop ------------------------------------------------------------------------------------------------
    def open_studies(self) -> None:
        """Create or load every study; refuse a budget below what a study already holds (nothing is changed)."""
        optuna = require_optuna()
        self.storage = journal_storage(self.journal)
        names = set(optuna.get_all_study_names(self.storage))
        held = {p.name: len(optuna.load_study(study_name=p.name, storage=self.storage).get_trials(deepcopy=False))
                for p in self.plans if p.name in names}
        over = [f"{p.describe()}: {held[p.name]} trials" for p in self.plans if held.get(p.name, 0) > self.options.budget]
        if over:
            raise ConfigError(f"budget={self.options.budget} is below what these studies in {self.journal} already "
                              f"hold: {'; '.join(over)}. Give budget >= their trial count (equal budgets), or "
                              f"another tune.name for a new tune")
        for plan in self.plans:
            if plan.name in names:  # (create_study would log a creation attempt into the journal)
                plan.study = optuna.load_study(study_name=plan.name, storage=self.storage)
            else:
                plan.study = optuna.create_study(study_name=plan.name, storage=self.storage, direction="maximize")
            if "space" not in plan.study.user_attrs:
                attrs = {"space": plan.space.to_dict(), "setting": plan.combo, "tune_seeds": plan.seeds,
                         "search": self.options.search, "sampler_seed": self.options.sampler_seed,
                         "pruner": pruner_settings(self.options.pruner, self.options.pruner_startup,
                                                   self.options.pruner_warmup_epochs, len(plan.seeds))}
                for key, value in attrs.items():
                    plan.study.set_user_attr(key, value)

    def search(self) -> None:
        """Rounds of settle -> ask -> launch until every study holds ``budget`` finished trials."""
        launched: set[tuple[str, int]] = set()
        while True:
            jobs: list[list[str]] = []
            this_round: set[tuple[str, int]] = set()
            for plan in self.plans:
                for number, todo in self.settle(plan):
                    if (plan.name, number) in launched:
                        raise PeftbenchError(
                            f"trial {number} of {plan.describe()}: its runs ended but no finished result matches "
                            f"them under {plan.base['paths']['results_dir']}/runs; see the launch's logs in "
                            f"{self.tune_dir / 'launches'}")
                    jobs += todo
                    this_round.add((plan.name, number))
                for number, todo in self.ask(plan):
                    jobs += todo
                    this_round.add((plan.name, number))
            jobs = [list(j) for j in dict.fromkeys(tuple(j) for j in jobs)]
            if not jobs:
                return
            drill = 0 < self.options.stop_after_trials <= self.told
            if drill:
                jobs = [[*j, "resume.stop_after_epochs=1"] for j in jobs]
            code = self.launch(jobs, "tune")
            if drill or code:
                for plan in self.plans:
                    self.settle(plan)
                if drill:
                    print(f"[peftbench-tune] drill: tune.stop_after_trials={self.options.stop_after_trials} stopped "
                          "the tune like a kill (trials left running); relaunch without it to continue", flush=True)
                    raise SystemExit(DRILL_EXIT)
                raise PeftbenchError(
                    f"the trial runs stopped with exit code {code} (the error is printed above); fix it and relaunch "
                    "the same command: finished trials are kept, unfinished ones resume")
            launched = this_round

    def launch(self, jobs: list[list[str]], stage: str) -> int:
        """Run ``jobs`` as one multirun (``hydra/sweeper=jobs``) through the command's launcher."""
        folder = self.tune_dir / "launches" / f"{dt.datetime.now():%Y%m%d-%H%M%S-%f}-{stage}"
        folder.mkdir(parents=True)
        (folder / "jobs.json").write_text(json.dumps(jobs, indent=1))
        cmd = [sys.executable, "-m", "peftbench.cli.train", "-m", *self.hydra_args, "hydra/sweeper=jobs",
               f"hydra.sweeper.jobs={fmt(str(folder / 'jobs.json'))}", f"hydra.sweep.dir={fmt(str(folder))}"]
        print(f"[peftbench-tune] {stage}: {len(jobs)} run(s), launch folder {folder}", flush=True)
        return subprocess.run(cmd).returncode

    # -- selection and final runs ------------------------------------------------------------------------------
    def select(self, plan: StudyPlan) -> TuningBlock:
        """The study's complete trial with the highest mean validation accuracy (ties: the earliest)."""
        candidates = []
        for trial in plan.study.get_trials(deepcopy=False):
            values = plan.space.decode(trial.params)
            state, value, runs, _ = self.outcome(plan, values, trial.number)
            complete = trial.state.name == "COMPLETE"
            candidates.append({"trial": trial.number, "state": trial.state.name.lower(), "values": values,
                               "val_accuracy": trial.value if complete else None, "runs": runs,
                               **self.counts(plan, values), "duplicate_of": trial.user_attrs.get("duplicate_of"),
                               # a pruned trial: its last report (step = epoch x seeds + seed index)
                               "pruned_at": trial.user_attrs.get("pruned") if not complete else None})
        ok = [c for c in candidates if c["state"] == "complete" and all(r["status"] == "success" for r in c["runs"])]
        if not ok:
            raise PeftbenchError(f"{plan.describe()}: no complete trial with every tune seed successful among "
                                 f"{len(candidates)} (diverged or pruned); widen the space or lower the learning rates")
        best = max(ok, key=lambda c: (c["val_accuracy"], -c["trial"]))
        states: dict[str, int] = {}
        for c in candidates:
            states[c["state"]] = states.get(c["state"], 0) + 1
        split = "val200" if plan.base["dataset"]["suite"] != "fgvc" else "val"
        return TuningBlock(
            search=self.options.search,
            criterion=f"max mean top-1 on {split} over tune seeds {plan.seeds} among complete trials (ties: earliest)",
            selected=best["values"],
            selected_run=best["runs"][0]["run_dir"],
            selected_val_accuracy=best["val_accuracy"],
            candidates=candidates,
            budget=self.options.budget,
            trials=states,
            selected_trial=best["trial"],
            selected_runs=[r["run_dir"] for r in best["runs"]],
            tune_seeds=plan.seeds,
            space=plan.space.to_dict(),
            max_params=self.options.max_params,
            study={"journal": str(self.journal), "name": plan.name, "sampler_seed": self.options.sampler_seed,
                   "pruner": plan.study.user_attrs.get("pruner")},
        )

    def finals(self) -> list[dict[str, Any]]:
        """Final runs of every seed with each study's selection; the tuning block into each result."""
        blocks = {plan.name: self.select(plan) for plan in self.plans}
        jobs = []
        for plan in self.plans:
            values = blocks[plan.name].selected
            for seed in plan.final_seeds:
                record = self.find_record(self.run_config(plan, values, seed, "final"))
                if record is None or record.status != "success":
                    jobs.append([*plan.combo, "protocol=final", f"seed={seed}", *self.params_overrides(values)])
        if jobs and self.launch(jobs, "final"):
            raise PeftbenchError("the final runs stopped with an error (printed above); fix it and relaunch the same "
                                 "command: the tune is kept, finished final runs are skipped")
        rows, finals, selections = [], [], []
        for plan in self.plans:
            block = blocks[plan.name]
            tests = []
            for seed in plan.final_seeds:
                record = self.find_record(self.run_config(plan, block.selected, seed, "final"))
                if record is None:
                    raise PeftbenchError(f"{plan.describe()}: the final run of seed {seed} left no result")
                record.tuning = block
                write_record(record)
                finals.append(record.to_dict())
                tests.append(record.accuracy)
            rows.append(self._row(plan, block, tests))
            print(f"[peftbench-tune] {plan.describe()}: selected {' '.join(self.params_overrides(block.selected))} "
                  f"(trial {block.selected_trial}, val top-1 {block.selected_val_accuracy:.2f}; {block.trials}); "
                  f"final top-1 on test {_fmt_acc(rows[-1]['final_test_mean'])} over seeds {plan.final_seeds}",
                  flush=True)
            ds = plan.base["dataset"]
            selections.append(Selected(plan.label, ds["suite"], ds["name"], plan.combo, plan.base, block.selected))
        write_table(self.tune_dir / "tuned.csv", rows)
        info = {"journal": str(self.journal), "seeds": self.plans[0].final_seeds, "search": self.options.search,
                "budget": self.options.budget, "tune_seeds": self.plans[0].seeds, "max_params": self.options.max_params,
                "criterion": blocks[self.plans[0].name].criterion}
        for path in write_recipes(self.tune_dir, self.options.name, selections, info):
            print(f"[peftbench-tune] recipe: {path}", flush=True)
        return finals

    def _row(self, plan: StudyPlan, block: TuningBlock, tests: list[float | None]) -> dict[str, Any]:
        accs = [t for t in tests if t is not None]
        mean = sum(accs) / len(accs) if accs else None
        std = (sum((a - mean) ** 2 for a in accs) / len(accs)) ** 0.5 if mean is not None else None
        best = next(c for c in block.candidates if c["trial"] == block.selected_trial)
        distinct = {canonical(c["values"]) for c in block.candidates}
        return {"method": plan.label, "backbone": plan.base["backbone"]["name"],
                "suite": plan.base["dataset"]["suite"], "task": plan.base["dataset"]["name"],
                "setting": " ".join(o for o in plan.combo if not o.startswith(("method=", "dataset="))),
                "search": self.options.search, "budget": self.options.budget, "trials": len(block.candidates),
                "distinct": len(distinct), "complete": block.trials.get("complete", 0),
                "pruned": block.trials.get("pruned", 0), "selected": canonical(block.selected),
                "val_accuracy": block.selected_val_accuracy, "tune_seeds": " ".join(map(str, block.tune_seeds)),
                "trainable_params_without_head": best["trainable_params_without_head"],
                "final_seeds": " ".join(map(str, plan.final_seeds)), "final_test_mean": mean, "final_test_std": std,
                "study": plan.name}


def _fmt_acc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def tune(overrides: Sequence[str], options: TuneOptions | None = None) -> list[dict[str, Any]]:
    """Plan, tune, select and run the final stage (see the module docstring).

    Args:
        overrides: ``peftbench-train`` overrides. Lists (``method=lora,vpt_deep``, ``sweep=vtab1k``) define the
            studies; ``seed=0,1,2`` the seeds; a list on a knob (``trainer.lr=1e-3,1e-2``) replaces its choices, a
            single value pins it. ``hydra...`` overrides (launchers) go to every launch.
        options: the search, budget and the rest (:class:`TuneOptions`).

    Returns:
        The final runs' result JSONs, each with its ``tuning`` block.
    """
    options = options or TuneOptions()
    plans, hydra_args, tune_dir = plan_studies(list(overrides), options)
    tuner = Tuner(plans, options, hydra_args, tune_dir)
    with _exclusive(tune_dir):
        tuner.open_studies()
        for plan in plans:
            print(f"[peftbench-tune] study {plan.name}: {plan.describe()}, knobs {', '.join(plan.space.knobs)}, "
                  f"seeds {plan.seeds}", flush=True)
        tuner.search()
        return tuner.finals()


class _exclusive:
    """One peftbench-tune at a time per tune folder (an OS lock: released when the process ends, even killed)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / ".lock"
        self.file: Any = None

    def __enter__(self) -> _exclusive:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.close()
            raise PeftbenchError(f"another peftbench-tune is working in {self.path.parent}; wait for it to end, or "
                                 "give this one another tune.name") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

