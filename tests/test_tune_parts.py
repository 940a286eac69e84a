"""peftbench-tune's parts, in process: search spaces and their checks, the trial reporter and pruning (a real
trial run), the tuning block, the leaderboard's tuned rows, the recipe export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from peftbench.apps.tune import TuneOptions
from peftbench.apps.tune_plan import plan_studies
from peftbench.config import compose
from peftbench.errors import ConfigError
from peftbench.identity import config_hash, run_dir
from peftbench.paths import config_dir
from peftbench.records import RunRecord, TuningBlock
from peftbench.tuning.export import Selected, recipe
from peftbench.tuning.space import load_space, parse_knob
from tests.tiny_data import embedded_tiny

SPACES = config_dir() / "tune"
FAST = ["trainer=embedded", "trainer.epochs=2", "trainer.device=cpu"]


def _plan(tmp_path: Path, *args: str, **options):
    return plan_studies([*FAST, f"paths.results_dir={tmp_path / 'results'}", *args], TuneOptions(**options))


def _space_dir(tmp_path: Path, files: dict[str, str]) -> str:
    folder = tmp_path / "spaces"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return str(folder)


# -- spaces ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(p.stem for p in SPACES.glob("*.yaml") if p.stem != "common"))
def test_every_space_file_names_real_knobs_with_valid_values(tmp_path, method):
    (plan,), _, _ = _plan(tmp_path, f"method={method}", pruner="none")
    assert plan.space.method_keys() and {"trainer.lr", "trainer.weight_decay"} <= set(plan.space.knobs)
    assert plan.space.size() == len(plan.space.grid())


def test_knob_shapes_and_their_errors():
    assert parse_knob("method.rank", [1, 8], "f").finite
    rng = parse_knob("trainer.lr", {"low": 1e-4, "high": 1e-2, "log": True}, "f")
    assert not rng.finite and rng.spec() == {"low": 1e-4, "high": 1e-2, "log": True}
    assert parse_knob("method.dim", {"low": 4, "high": 64}, "f").integer
    for spec, needle in [([], "no choices"), ([1, 1], "repeats"), ({"low": 1}, "low and high"),
                         ({"low": 0.0, "high": 1.0, "log": True}, "low > 0"), ("x", "neither"),
                         ({"low": 2, "high": 1}, "low < high")]:
        with pytest.raises(ConfigError, match=needle):
            parse_knob("k", spec, "f")


def test_command_line_lists_replace_choices_and_single_values_pin(tmp_path):
    (plan,), _, _ = _plan(tmp_path, "method=lora", "trainer.lr=1e-3,3e-3,1e-2", "trainer.weight_decay=0.0")
    assert plan.space.knobs["trainer.lr"].choices == (1e-3, 3e-3, 1e-2)
    assert "trainer.weight_decay" not in plan.space.knobs and plan.space.pinned == {"trainer.weight_decay": 0.0}
    # one study per method x task, whatever the seeds; the seeds are the final stage's and (default) the tune's
    plans, _, tune_dir = _plan(tmp_path, "method=lora,vpt_deep", "seed=0,1", pruner="none")
    assert [p.label for p in plans] == ["lora", "vpt_deep"] and all(p.seeds == p.final_seeds == [0, 1] for p in plans)
    assert tune_dir == tmp_path / "results" / "tune" / "tuned" and not tune_dir.exists()


@pytest.mark.parametrize(("args", "options", "needle"), [
    (["method=lora,vpt_deep", "method.rank=4,8"], {}, "not a knob of the search space of vpt_deep"),
    (["method=lora"], {"search": "grid", "budget": 17}, "has 16 points, fewer than budget=17"),
    (["method=lora", "trainer.lr=1e-3", "trainer.weight_decay=0", "method.rank=8"], {}, "search space of lora is empty"),
    (["method=lora"], {"max_params": 10}, "no candidate of lora fits tune.max_params=10"),
    (["method=lora", "method.rank=0,8"], {}, "rank"),
    (["method=lora", "sweep=tune_grid"], {}, "comes from a sweep preset"),
    (["method=lora", "protocol=final"], {}, "protocol=tune"),
    (["method=lora", "hydra.sweeper.n_trials=3"], {}, "budget=N"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, args, options, needle):
    with pytest.raises(ConfigError, match=needle):
        _plan(tmp_path, *args, **options)
    assert not (tmp_path / "results").exists()


def test_unknown_knob_names_the_valid_keys(tmp_path):
    spaces = _space_dir(tmp_path, {"lora": "knobs:\n  method.rnk: [4, 8]\n"})
    with pytest.raises(ConfigError, match=r"unknown knob method.rnk .*valid keys of method: .*method.rank"):
        _plan(tmp_path, "method=lora", spaces=spaces)


def test_parameter_budget_keeps_the_settings_that_fit(tmp_path):
    (plan,), _, _ = _plan(tmp_path, "method=lora", max_params=30_000)  # vit_micro: rank r -> 3072 r parameters
    assert list(plan.space.joint.values()) == [{"method.rank": 1}, {"method.rank": 8}]
    assert plan.space.decode({"method": "rank=8", "trainer.lr": 1e-3}) == {"method.rank": 8, "trainer.lr": 1e-3}
    assert "method.rank" in plan.space.searched_keys()


def test_seed_is_interpolated_nowhere():
    # peftbench-tune composes a trial once and sets each tune seed on the copy: it must equal composing it
    one, two = compose(["seed=1", "method=lora"]), compose(["seed=2", "method=lora"])
    one["seed"] = 2
    assert one == two


# -- the reporter and a pruned run -------------------------------------------------------------------------------
def test_a_trial_run_below_the_median_is_pruned_and_recorded_as_pruned(tmp_path):
    import optuna

    from peftbench.apps.train import run
    from peftbench.apps.tune import Tuner

    embedded_tiny(tmp_path / "data")
    options = TuneOptions(budget=2, pruner_startup=1, pruner_warmup_epochs=0)
    plans, hydra_args, tune_dir = _plan(tmp_path, "method=linear", f"data.root={tmp_path / 'data'}",
                                        "trainer.weight_decay=0", budget=2, pruner_startup=1, pruner_warmup_epochs=0)
    tuner = Tuner(plans, options, hydra_args, tune_dir)
    tuner.open_studies()
    (plan,) = plans
    # a finished trial that reached 100% after epoch 1: any real run is below it and gets pruned
    done = plan.study.ask(plan.space.distributions())
    done.report(100.0, 1)
    plan.study.tell(done, 100.0)
    ((number, (job,)),) = tuner.ask(plan)
    record = run(compose(job))
    assert record.status == "pruned" and "pruned after epoch 1" in record.message
    assert record.metrics.train is None and record.metrics.periodic_eval.eval_history[0]["epoch"] == 1
    assert not (Path(record.provenance.run_dir) / "resume.pt").exists()
    assert tuner.settle(plan) == []
    trial = plan.study.trials[number]
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.user_attrs["pruned"]["epoch"] == 1
    assert list(trial.intermediate_values) == [1]  # step = epoch x seeds + seed index


# -- records, leaderboard, export ----------------------------------------------------------------------------
def _block(**kw) -> TuningBlock:
    base = dict(search="tpe", criterion="c", selected={"method.rank": 8, "trainer.lr": 1e-3}, selected_run="r",
                selected_val_accuracy=50.0, candidates=[])
    return TuningBlock(**{**base, **kw})


def test_tuning_blocks_of_old_and_new_results_read_back():
    raw = {"status": "running", "suite": "vtab", "task": "dtd", "backbone": "b", "method": "lora",
           "protocol": "final", "config": {}}
    old = {**raw, "tuning": {k: v for k, v in _block().__dict__.items()
                             if k in ("search", "criterion", "selected", "selected_run", "selected_val_accuracy",
                                      "candidates")}}
    assert RunRecord.from_dict(old).tuning == _block()
    new = RunRecord.from_dict({**raw, "tuning": _block(budget=16, trials={"complete": 16}).__dict__})
    assert new.tuning.budget == 16 and "tuning" not in new.extra
    odd = RunRecord.from_dict({**raw, "tuning": {**_block().__dict__, "unknown": 1}})
    assert odd.tuning is None and "tuning" in odd.extra  # carried through unchanged


def test_leaderboard_puts_a_tuned_method_in_one_row_with_every_seed(tmp_path):
    from peftbench.atomic import write_json_atomic
    from peftbench.results.leaderboard import build

    for task, rank in (("dtd", 8), ("cifar", 16)):
        for seed in (0, 1, 2):
            cfg = {"backbone": {"name": "b"}, "method": {"name": "lora", "rank": rank}, "seed": seed,
                   "dataset": {"name": task, "suite": "vtab"}, "trainer": {"lr": 1e-3}, "protocol": "final"}
            h = config_hash(cfg)
            res = {"status": "success", "suite": "vtab", "task": task, "backbone": "b", "method": "lora",
                   "family": "partial", "subfamily": "reparameter", "protocol": "final", "seed": seed,
                   "config_hash": h, "finished_at": f"2026-01-0{seed + 1}", "config": cfg, "message": "",
                   "metrics": {"accuracy": 50.0 + seed, "trainable_params": 10, "trainable_params_without_head": 9},
                   "tuning": _block(selected={"method.rank": rank}, budget=16).__dict__}
            write_json_atomic(run_dir(tmp_path, cfg, h) / "result.json", res)
    build(tmp_path)
    import pandas as pd

    table = pd.read_csv(tmp_path / "leaderboard" / "vtab1k.csv")
    assert len(table) == 1 and table["dtd_n"].iloc[0] == 3 and table["cifar_n"].iloc[0] == 3
    assert json.loads(table["method_options"].iloc[0]) == {"rank": "tuned", "tuned": "tpe, budget 16"}
    problems = pd.read_csv(tmp_path / "leaderboard" / "problems.csv")
    assert "superseded" not in set(problems["status"])


def test_recipe_has_the_recipe_format(tmp_path):
    base = compose(["method=lora", "trainer.epochs=3", "backbone=vit_test"])
    combo = ["method=lora", "trainer.epochs=3", "backbone=vit_test", "data.root=/x", "trainer.device=cpu"]
    sel = [Selected("lora", "vtab", t, combo, base, {"method.rank": r, "trainer.lr": 1e-3})
           for t, r in (("dtd", 8), ("cifar", 16))]
    info = {"journal": "j", "seeds": [0, 1], "search": "tpe", "budget": 16, "tune_seeds": [0],
            "criterion": "c", "max_params": None}
    out = recipe("tuned", "lora", sel, info)
    assert out["defaults"] == [{"override /backbone": "vit_test"}, {"override /method": "lora"}]
    assert out["recipe"]["name"] == "tuned/lora" and out["recipe"]["seeds"] == [0, 1]
    assert out["trainer"] == {"epochs": 3} and "data" not in out  # where / how a run is stored is not shared
    assert out["per_task"]["vtab"] == {"dtd": {"method.rank": 8, "trainer.lr": 1e-3},
                                       "cifar": {"method.rank": 16, "trainer.lr": 1e-3}}
    assert set(out["per_task"]["fallback"]) == {"values", "note"}
    assert yaml.safe_load(yaml.safe_dump(out)) == out
    other = Selected("lora", "vtab", "eurosat", [*combo, "trainer.warmup_epochs=0"], base, {"method.rank": 1})
    assert "different settings" in recipe("tuned", "lora", [*sel, other], info)


def test_load_space_prefers_a_preset_label_file(tmp_path):
    spaces = Path(_space_dir(tmp_path, {"mine": "knobs:\n  method.rank: [2]\n"}))
    assert list(load_space("lora", "mine", [spaces, SPACES]).knobs) == ["trainer.lr", "trainer.weight_decay",
                                                                        "method.rank"]
    assert load_space("lora", "mine", [spaces, SPACES]).knobs["method.rank"].choices == (2,)
