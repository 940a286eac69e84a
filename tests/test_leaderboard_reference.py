"""Our runs beside the published numbers: per task, per VTAB group, deltas, PPT, Pareto fronts, backbones."""

from __future__ import annotations

import functools
import math

import pandas as pd
import pytest

from peftbench.atomic import write_json_atomic
from peftbench.config import compose
from peftbench.identity import config_hash, run_dir
from peftbench.results.leaderboard import build
from peftbench.results.reference import load_reference, ppt
from peftbench.results.suites import FGVC_TASKS, VTAB_GROUPS, VTAB_TASKS
from peftbench.results.tradeoffs import pareto_mask

REFERENCE_COLUMNS = ["suite", "backbone", "method", "display_name", "paper_mean", "params_M", "paper_ppt", "source"]


@functools.cache
def _method_block(method: str) -> dict:
    """The registered defaults of ``method`` (the setting published rows are matched against), else a bare name."""
    try:
        return compose([f"method={method}"])["method"]
    except Exception:  # a name the registry does not have
        return {"name": method}


def write_run(results, *, task, method="lora", suite="vtab", backbone="vit_b16_in21k", seed=0, acc=50.0,
              status="success", family="partial", params=294_912, head=769 * 100, mem=1000.0, img_s=100.0,
              protocol="final", finished="2026-01-01T00:00:00", metrics=None, recipe=None, method_options=None):
    """One result JSON written by the project's own writer at the path a run would use."""
    method_block = {**_method_block(method), **(method_options or {})}
    cfg = {"backbone": {"name": backbone}, "method": method_block, "dataset": {"name": task, "suite": suite},
           "trainer": {"lr": 1e-3}, "seed": seed, "protocol": protocol}
    if recipe is not None:
        cfg["recipe"] = {"name": recipe}
    h = config_hash(cfg)
    res = {
        "schema_version": 1, "status": status, "message": "" if status == "success" else "boom", "suite": suite,
        "task": task, "backbone": backbone, "method": method, "family": family, "subfamily": "x",
        "protocol": protocol, "seed": seed, "config_hash": h, "finished_at": finished, "config": cfg,
        "metrics": metrics if metrics is not None else {
            "accuracy": acc, "trainable_params": params + head, "trainable_params_without_head": params,
            "trainable_percent": params / 85.8e6 * 100, "peak_train_mem_mb": mem, "train_img_s": img_s,
            "infer_img_s": 3 * img_s,
        },
    }
    if status == "running":
        res.pop("metrics")
        res.pop("finished_at")
    path = run_dir(results, cfg, h) / "result.json"
    write_json_atomic(path, res)
    return path


def write_reference(folder, rows, suite="vtab", extra=None):
    """A reference CSV in the documented format; ``rows`` maps display name -> (method, backbone, accs, params_M);
    ``extra`` maps display name -> further columns (recipe, reports)."""
    tasks = VTAB_TASKS if suite == "vtab" else FGVC_TASKS
    records = []
    for name, (method, backbone, accs, params) in rows.items():
        records.append({"suite": suite, "backbone": backbone, "method": method, "display_name": name,
                        **dict(zip(tasks, accs, strict=True)), "paper_mean": sum(accs) / len(accs),
                        "params_M": params, "paper_ppt": "", "source": f"test source for {name}",
                        **(extra or {}).get(name, {})})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_csv(folder / f"{suite}_test.csv", index=False)


def test_vtab_deltas_per_task_group_and_mean(tmp_path):
    for i, task in enumerate(VTAB_TASKS):
        write_run(tmp_path, task=task, seed=0, acc=60.0 + i)
        write_run(tmp_path, task=task, seed=1, acc=62.0 + i)  # mean over seeds = 61 + i
    paper = [50.0 + i for i in range(19)]
    write_reference(tmp_path / "reference", {"LoRA": ("lora", "vit_b16_in21k", paper, 0.29),
                                             "Swin LoRA": ("lora", "swin_b_in22k", [1.0] * 19, 0.29),
                                             "NOAH": ("", "vit_b16_in21k", paper, 0.43)})
    board = build(tmp_path)
    versus = pd.read_csv(board.written["vtab1k_vs_reference"])
    assert set(versus["reference"]) == {"LoRA"}  # the Swin row and the unmapped NOAH row never match
    by_metric = versus.set_index("metric")
    assert by_metric.loc["cifar", "ours"] == pytest.approx(61.0)
    assert by_metric.loc["cifar", "paper"] == pytest.approx(50.0)
    for task in VTAB_TASKS:
        assert by_metric.loc[task, "delta"] == pytest.approx(11.0)
    natural = [VTAB_TASKS.index(t) for t in VTAB_GROUPS["natural"]]
    assert by_metric.loc["natural", "paper"] == pytest.approx(50 + sum(natural) / len(natural))
    assert by_metric.loc["structured", "delta"] == pytest.approx(11.0)
    group_paper = [by_metric.loc[g, "paper"] for g in VTAB_GROUPS]
    assert by_metric.loc["mean_of_group_means", "paper"] == pytest.approx(sum(group_paper) / 3)
    assert by_metric.loc["mean_over_tasks", "ours"] == pytest.approx(61 + 9.0)
    expected_ppt = (70.0 / 100) * math.exp(-math.log10(294_912 / 1e7 + 1))
    assert by_metric.loc["ppt", "ours"] == pytest.approx(expected_ppt)
    table = pd.read_csv(board.written["vtab1k"]).iloc[0]
    assert table["ppt"] == pytest.approx(expected_ppt)
    assert table["peak_train_mem_mb"] == pytest.approx(1000.0)


def test_other_backbone_is_reported_not_compared(tmp_path):
    for task in FGVC_TASKS:
        write_run(tmp_path, task=task, suite="fgvc", backbone="vit_l16_in21k", method="ssf")
        write_run(tmp_path, task=task, suite="fgvc", backbone="vit_b16_in21k", method="bitfit")
    write_reference(tmp_path / "reference", {"SSF": ("ssf", "vit_b16_in21k", [90.0] * 5, 0.2)}, suite="fgvc")
    board = build(tmp_path)
    versus = pd.read_csv(board.written["fgvc_vs_reference"]).set_index("method")
    assert "vit_b16_in21k" in versus.loc["ssf", "reference_status"]
    assert pd.isna(versus.loc["ssf", "paper"])
    assert versus.loc["bitfit", "reference_status"] == "no published row for this method"
    assert board.backbones["fgvc"] == ["vit_b16_in21k", "vit_l16_in21k"]


def test_mixed_backbones_are_separate_rows_and_fronts(tmp_path):
    for task in FGVC_TASKS:
        write_run(tmp_path, task=task, suite="fgvc", backbone="vit_b16_in21k", method="lora", acc=80.0, params=300_000)
        write_run(tmp_path, task=task, suite="fgvc", backbone="vit_l16_in21k", method="lora", acc=90.0, params=800_000)
        write_run(tmp_path, task=task, suite="fgvc", backbone="vit_b16_in21k", method="full", acc=79.0,
                  params=85_800_000, family="baseline", mem=9000.0)
    board = build(tmp_path, reference_dir=tmp_path / "none")
    table = pd.read_csv(board.written["fgvc"])
    assert sorted(zip(table["backbone"], table["mean_over_tasks"], strict=True)) == [
        ("vit_b16_in21k", 79.0), ("vit_b16_in21k", 80.0), ("vit_l16_in21k", 90.0)]
    fronts = pd.read_csv(board.written["pareto"])
    b16 = fronts[fronts["backbone"] == "vit_b16_in21k"].set_index("method")
    # full is less accurate and costlier than lora on the same backbone: dominated on both fronts
    assert not b16.loc["full", "pareto_params"] and not b16.loc["full", "pareto_memory"]
    assert b16.loc["lora", "pareto_params"]
    # vit_l16's lora would dominate both but is on another backbone: its own front
    assert fronts[fronts["backbone"] == "vit_l16_in21k"]["pareto_params"].tolist() == [True]


def test_incomplete_rows_stay_off_the_fronts(tmp_path):
    for task in FGVC_TASKS:
        write_run(tmp_path, task=task, suite="fgvc", method="lora", acc=80.0)
    write_run(tmp_path, task="cub", suite="fgvc", method="ssf", acc=99.0, params=1)
    fronts = pd.read_csv(build(tmp_path).written["pareto"]).set_index("method")
    assert not fronts.loc["ssf", "complete"] and pd.isna(fronts.loc["ssf", "pareto_params"])
    assert fronts.loc["lora", "pareto_params"]


def test_pareto_mask_keeps_ties_and_drops_dominated():
    # (acc, cost): b dominates a; c and d trade off; e equals d
    acc = [70.0, 72.0, 75.0, 71.0, 71.0]
    cost = [2.0, 1.0, 5.0, 0.5, 0.5]
    assert pareto_mask(acc, cost) == [False, True, True, True, True]


def test_ppt_formula_units():
    assert ppt(100.0, 0) == pytest.approx(1.0)
    assert ppt(50.0, 9e7) == pytest.approx(0.5 * math.exp(-1.0))  # log10(9e7/1e7 + 1) = 1
    assert ppt(None, 10) is None


def test_reference_rows_need_a_source_and_known_tasks(tmp_path):
    write_reference(tmp_path / "ok", {"LoRA": ("lora", "vit_b16_in21k", [1.0] * 19, 0.29)})
    frame = pd.read_csv(tmp_path / "ok" / "vtab_test.csv")
    bad = tmp_path / "bad"
    bad.mkdir()
    frame.assign(source="").to_csv(bad / "x.csv", index=False)
    from peftbench.errors import DataError

    with pytest.raises(DataError, match="no source"):
        load_reference(bad)
    frame.rename(columns={"cifar": "cifar100"}).to_csv(bad / "x.csv", index=False)
    with pytest.raises(DataError, match="cifar"):
        load_reference(bad)


def test_costs_come_from_one_device_and_costs_csv_has_each(tmp_path):
    """CPU and GPU runs of one setting: the suite row takes the costs of the device most runs used, never a mix."""
    import json

    for seed, (device, mem) in enumerate([("cpu-a", 100.0), ("cpu-a", 120.0), ("gpu-b", 5000.0)]):
        path = write_run(tmp_path, task="cifar", seed=seed, mem=mem)
        res = json.loads(path.read_text())
        res["device"] = device
        write_json_atomic(path, res)
    build(tmp_path)
    row = pd.read_csv(tmp_path / "leaderboard" / "vtab1k.csv").iloc[0]
    assert row["cost_device"] == "cpu-a" and row["peak_train_mem_mb"] == 120.0  # max over that device's runs
    costs = pd.read_csv(tmp_path / "leaderboard" / "costs.csv").set_index("device")
    assert costs.loc["gpu-b", "peak_train_mem_mb"] == 5000.0 and costs.loc["gpu-b", "runs"] == 1
    assert costs.loc["cpu-a", "runs"] == 2


def test_max_test_table_and_a_source_that_reports_max_test_is_compared_with_it(tmp_path):
    for i, task in enumerate(VTAB_TASKS):
        metrics = {"accuracy": 60.0, "max_eval_accuracy": 65.0 + i, "max_eval_epoch": 50, "evaluated_epochs": [50, 100],
                   "trainable_params": 294_912 + 76_900, "trainable_params_without_head": 294_912}
        write_run(tmp_path, task=task, metrics=metrics, recipe="noah/lora")
        write_run(tmp_path, task=task, acc=58.0)  # the registered defaults, no recipe
    paper = [50.0] * 19
    write_reference(tmp_path / "reference", {"LoRA (NOAH)": ("lora", "vit_b16_in21k", paper, 0.29),
                                             "LoRA (defaults)": ("lora", "vit_b16_in21k", paper, 0.29)},
                    extra={"LoRA (NOAH)": {"recipe": "noah/lora", "reports": "max_test"},
                           "LoRA (defaults)": {"reports": "last"}})
    board = build(tmp_path)
    last = pd.read_csv(board.written["vtab1k"]).fillna({"recipe": ""}).set_index("recipe")
    best = pd.read_csv(board.written["vtab1k_max_test"]).fillna({"recipe": ""}).set_index("recipe")
    assert sorted(last.index) == sorted(best.index) == ["", "noah/lora"]
    assert (last.loc["noah/lora", "cifar"], best.loc["noah/lora", "cifar"]) == (60.0, 65.0)
    assert best.loc["", "cifar"] == pytest.approx(58.0)  # runs recorded before max_eval: the last epoch
    versus = pd.read_csv(board.written["vtab1k_vs_reference"]).fillna({"recipe": ""})
    pairs = set(zip(versus["recipe"], versus["reference"], versus["reports"], strict=True))
    assert pairs == {("noah/lora", "LoRA (NOAH)", "max_test"), ("", "LoRA (defaults)", "last")}
    cifar = versus[versus["metric"] == "cifar"].set_index("reference")
    assert cifar.loc["LoRA (NOAH)", "ours"] == pytest.approx(65.0)  # its max, not its last epoch (60)
    assert cifar.loc["LoRA (defaults)", "ours"] == pytest.approx(58.0)


def test_a_run_with_another_setting_is_not_set_against_the_published_row(tmp_path):
    for task in VTAB_TASKS:
        write_run(tmp_path, task=task, method_options={"rank": 16})
    write_reference(tmp_path / "reference", {"LoRA": ("lora", "vit_b16_in21k", [50.0] * 19, 0.29)},
                    extra={"LoRA": {"recipe": "noah/lora", "reports": "max_test"}})
    versus = pd.read_csv(build(tmp_path).written["vtab1k_vs_reference"])
    assert len(versus) == 1 and versus["reference_status"].iloc[0].startswith("no published row for this setting")
    assert "experiment=noah/lora" in versus["reference_status"].iloc[0]


def test_params_are_the_mean_over_tasks_of_per_task_counts(tmp_path):
    for i, task in enumerate(VTAB_TASKS):
        params = 100_000 if i % 2 else 200_000  # per-task ranks, as FacT-TK's 32 / 16
        write_run(tmp_path, task=task, params=params)
    table = pd.read_csv(build(tmp_path).written["vtab1k"])
    expected = (10 * 200_000 + 9 * 100_000) / 19
    assert table["params_M"].iloc[0] == pytest.approx(expected / 1e6)
    assert table["ppt"].iloc[0] == pytest.approx(ppt(table["mean_over_tasks"].iloc[0], expected))
