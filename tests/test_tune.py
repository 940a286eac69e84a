"""``peftbench-tune`` end to end on the embedded task (48 / 24 / 24 images, 2 epochs on the micro ViT): LoRA (rank +
lr), VPT-deep (length + lr) and an adapter (dim + lr) with the same budget, killed half-way by the drill and
relaunched with the same command; one study per method, exactly the budget of trials, one selection per method x
task for every final seed, the leaderboard keeping every seed, the recipes exported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.tiny_data import embedded_tiny

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
METHODS = {"lora": "method.rank", "vpt_deep": "method.length", "adapter": "method.dim"}
BUDGET = 3


def _command(tmp_path: Path) -> list[str]:
    return [f"method={','.join(METHODS)}", "trainer=embedded", "trainer.batch_size=16", "trainer.device=cpu",
            "trainer.weight_decay=1e-4",  # pinned: the knobs are the method's own and the learning rate
            "seed=0,1", "tune.seeds=[0]", f"budget={BUDGET}", "tune.batch=2", "tune.pruner=none",
            f"paths.results_dir={tmp_path / 'results'}", f"data.root={tmp_path / 'data'}"]


def _tune(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peftbench.cli.tune", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=ENV, timeout=900)


def _studies(tmp_path: Path) -> dict[str, list]:
    import optuna

    from peftbench.tuning.study import journal_storage

    storage = journal_storage(tmp_path / "results" / "tune" / "tuned" / "studies.journal")
    return {name.split("/")[3]: optuna.load_study(study_name=name, storage=storage).trials
            for name in optuna.get_all_study_names(storage)}


def _results(tmp_path: Path, protocol: str) -> list[dict]:
    out = [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / "runs").rglob("result.json"))]
    return [r for r in out if r["protocol"] == protocol]


@pytest.mark.slow
def test_equal_budget_tune_killed_and_relaunched(tmp_path, capsys):
    import optuna

    embedded_tiny(tmp_path / "data")
    command = _command(tmp_path)

    # 1. two trials per study in the first round (tune.batch=2); the drill stops the tune like a kill once those
    #    6 trials finished: the next trials are left running, the first of their runs stopped after epoch 1 with
    #    its checkpoint
    proc = _tune(tmp_path, *command, "tune.stop_after_trials=6")
    assert proc.returncode == 3, proc.stderr[-3000:]
    running = optuna.trial.TrialState.RUNNING
    studies = _studies(tmp_path)
    assert sorted(studies) == sorted(METHODS)
    complete = optuna.trial.TrialState.COMPLETE
    assert all([t.state for t in trials] == [complete, complete, running] for trials in studies.values())
    interrupted = [r for r in _results(tmp_path, "tune") if r["status"] == "failed"]
    assert len(interrupted) == 1 and (Path(interrupted[0]["run_dir"]) / "resume.json").exists()

    # 2. the same command again: the running trials resume, the budget is filled, the final stage runs
    proc = _tune(tmp_path, *command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    studies = _studies(tmp_path)
    for method, trials in studies.items():
        assert [t.number for t in trials] == list(range(BUDGET)), method  # one study, exactly the budget
        assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
        assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == BUDGET  # drawn without replacement
        assert set(trials[0].params) == {METHODS[method], "trainer.lr"}
        assert all(t.user_attrs["trainable_params_without_head"] > 0 for t in trials)
    tunes = _results(tmp_path, "tune")
    assert len(tunes) == len(METHODS) * BUDGET and {r["status"] for r in tunes} == {"success"}
    resumed = next(r for r in tunes if r["run_dir"] == interrupted[0]["run_dir"])
    assert resumed["resumed_from_epoch"] == 1

    finals = _results(tmp_path, "final")
    assert len(finals) == len(METHODS) * 2 and {r["status"] for r in finals} == {"success"}
    for method, trials in studies.items():
        mine = [r for r in finals if r["method"] == method]
        best = max(trials, key=lambda t: (t.value, -t.number))
        for r in mine:  # selected once per method x task: every seed runs the same setting
            tuning = r["tuning"]
            assert tuning["selected_trial"] == best.number and tuning["selected"] == best.params
            assert tuning["selected_val_accuracy"] == best.value and tuning["budget"] == BUDGET
            assert [c["val_accuracy"] for c in tuning["candidates"]] == [t.value for t in trials]
            assert tuning["tune_seeds"] == [0] and tuning["trials"] == {"complete": BUDGET}
            for key, value in best.params.items():
                section, _, name = key.partition(".")
                assert r["config"][section][name] == value
        assert sorted(r["seed"] for r in mine) == [0, 1]
        run_val = {t["run_dir"]: t["metrics"]["accuracy"] for t in tunes}
        cand = mine[0]["tuning"]["candidates"][best.number]
        assert run_val[cand["runs"][0]["run_dir"]] == best.value  # the candidates' accuracies are the runs'

    # the leaderboard keeps every seed: one row per method, nothing superseded
    from peftbench.results.leaderboard import build

    build(tmp_path / "results")
    table = pd.read_csv(tmp_path / "results" / "leaderboard" / "embedded.csv")
    assert sorted(table["method"]) == sorted(METHODS) and set(table["dsprites_loc_n"]) == {2}
    problems = pd.read_csv(tmp_path / "results" / "leaderboard" / "problems.csv")
    assert "superseded" not in set(problems["status"])

    # tuned.csv: every row had the same budget; the recipes hold the selection per task
    tuned = pd.read_csv(tmp_path / "results" / "tune" / "tuned" / "tuned.csv")
    assert sorted(tuned["method"]) == sorted(METHODS) and set(tuned["budget"]) == set(tuned["trials"]) == {BUDGET}
    for method, trials in studies.items():
        path = tmp_path / "results" / "tune" / "tuned" / "experiment" / "tuned" / f"{method}.yaml"
        assert path.read_text().startswith("# @package _global_\n")
        exported = yaml.safe_load(path.read_text())
        assert {"override /method": method} in exported["defaults"]
        assert {"override /trainer": "embedded"} in exported["defaults"]
        assert exported["trainer"] == {"batch_size": 16, "weight_decay": 1e-4}
        best = max(trials, key=lambda t: (t.value, -t.number))
        assert exported["per_task"]["embedded"]["dsprites_loc"] == best.params
        assert exported["recipe"]["name"] == f"tuned/{method}" and exported["recipe"]["seeds"] == [0, 1]
        if method != "lora":
            continue
        # the exported recipe reruns through the per-task mechanism: dry_run resolves the selected values (one
        # method: the three recipes differ only in the values checked above)
        rerun = [f"hydra.searchpath=[file://{tmp_path / 'results' / 'tune' / 'tuned'}]", f"experiment=tuned/{method}",
                 "dataset=embedded/dsprites_loc", "dry_run=true"]
        proc = subprocess.run([sys.executable, "-m", "peftbench.cli.train", *rerun], capture_output=True, text=True,
                              check=True, timeout=300)
        resolved = json.loads(proc.stdout)
        assert resolved["per_task"]["source"] == "embedded/dsprites_loc"
        for key, value in best.params.items():
            block, _, leaf = key.partition(".")
            assert resolved["config"][block][leaf] == value, key

    # 3. once more (in process): nothing is run again; a budget below what the studies hold is refused, and
    #    nothing changes
    from peftbench.apps.tune import TuneOptions, tune
    from peftbench.errors import ConfigError

    journal = (tmp_path / "results" / "tune" / "tuned" / "studies.journal").read_bytes()
    overrides = [c for c in command if not c.startswith(("budget=", "tune."))]
    again = tune(overrides, TuneOptions(budget=BUDGET, seeds=[0], pruner="none"))
    assert "launch folder" not in capsys.readouterr().out
    assert sorted(r["finished_at"] for r in again) == sorted(r["finished_at"] for r in finals)
    with pytest.raises(ConfigError, match="budget=2 is below"):
        tune(overrides, TuneOptions(budget=2, seeds=[0], pruner="none"))
    assert (tmp_path / "results" / "tune" / "tuned" / "studies.journal").read_bytes() == journal


@pytest.mark.parametrize(("args", "needle"), [
    (["search=bayes"], "valid choices: tpe, grid, random"),
    (["budget=0"], "budget must be an integer >= 1"),
    (["tune.budgte=3"], "has no option(s) budgte"),
])
def test_tune_user_errors_exit_2_without_a_traceback(tmp_path, args, needle):
    # (the plan's errors, unknown knobs and the like, are in test_tune_parts.py: the same wrapper turns them into
    # exit code 2)
    proc = _tune(tmp_path, *args, f"paths.results_dir={tmp_path / 'results'}")
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()
