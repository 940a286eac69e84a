"""Leaderboard aggregation from run JSONs written the way runs write them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from peftbench.atomic import write_json_atomic
from peftbench.cli.leaderboard import main as leaderboard_main
from peftbench.identity import config_hash, run_dir
from peftbench.results.leaderboard import build
from peftbench.results.suites import VTAB_GROUPS, VTAB_TASKS


def _write(results, *, task, method="lora", seed=0, acc=50.0, status="success", suite="vtab", lr=1e-3,
           finished="2026-01-01T00:00:00", protocol="final", weights_sha256=None):
    cfg = {
        "backbone": {"name": "vit_b16_in21k"}, "method": {"name": method, "rank": 8},
        "dataset": {"name": task, "suite": suite}, "trainer": {"lr": lr}, "seed": seed, "protocol": protocol,
    }
    h = config_hash(cfg)
    res = {
        "status": status, "suite": suite, "task": task, "backbone": "vit_b16_in21k", "method": method,
        "family": "partial", "subfamily": "reparameter", "protocol": protocol, "seed": seed, "config_hash": h,
        "finished_at": finished, "config": cfg, "message": "" if status == "success" else "boom",
        "backbone_weights_sha256": weights_sha256,
        "metrics": {"accuracy": acc if status == "success" else None, "trainable_params": 1000,
                    "trainable_params_without_head": 900, "trainable_percent": 0.1},
    }
    folder = run_dir(results, cfg, h)
    if weights_sha256:  # another weights file at the same path: the real run's hash differs too
        folder = folder.with_name(folder.name[:-8] + weights_sha256[:8])
    write_json_atomic(folder / "result.json", res)


def test_vtab_table_means_groups_and_seeds(tmp_path):
    for i, task in enumerate(VTAB_TASKS):
        _write(tmp_path, task=task, seed=0, acc=float(i))
        _write(tmp_path, task=task, seed=1, acc=float(i) + 2)
    build(tmp_path)
    table = pd.read_csv(tmp_path / "leaderboard" / "vtab1k.csv")
    assert len(table) == 1
    row = table.iloc[0]
    assert row["cifar"] == pytest.approx(1.0)  # (0 + 2) / 2
    assert row["cifar_std"] == pytest.approx(1.0)
    assert row["cifar_n"] == 2
    natural = [VTAB_TASKS.index(t) + 1 for t in VTAB_GROUPS["natural"]]
    assert row["natural"] == pytest.approx(sum(natural) / len(natural))
    means = [row[g] for g in VTAB_GROUPS]
    assert row["mean_of_group_means"] == pytest.approx(sum(means) / 3)
    assert row["mean_over_tasks"] == pytest.approx(sum(range(19)) / 19 + 1)
    assert row["params_M"] == pytest.approx(900 / 1e6)


def test_failed_runs_are_listed_apart_and_never_averaged(tmp_path):
    _write(tmp_path, task="cifar", seed=0, acc=80.0)
    _write(tmp_path, task="cifar", seed=1, status="diverged")
    _write(tmp_path, task="dtd", seed=0, acc=60.0)
    bad = tmp_path / "runs" / "vtab" / "dtd" / "broken" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{ not json")
    build(tmp_path)
    table = pd.read_csv(tmp_path / "leaderboard" / "vtab1k.csv").iloc[0]
    assert table["cifar"] == 80.0 and table["cifar_n"] == 1
    assert pd.isna(table["natural"])  # incomplete group: no mean
    assert pd.isna(table["mean_over_tasks"])
    problems = pd.read_csv(tmp_path / "leaderboard" / "problems.csv")
    assert set(problems["status"]) == {"diverged", "unreadable"}
    runs = pd.read_csv(tmp_path / "leaderboard" / "runs.csv")
    assert len(runs) == 3


def test_two_settings_of_one_task_are_not_mixed(tmp_path):
    _write(tmp_path, task="cifar", acc=10.0, lr=1e-2, finished="2026-01-01T00:00:00")
    _write(tmp_path, task="cifar", acc=70.0, lr=1e-3, finished="2026-01-02T00:00:00")
    build(tmp_path)
    assert pd.read_csv(tmp_path / "leaderboard" / "vtab1k.csv").iloc[0]["cifar"] == 70.0
    problems = pd.read_csv(tmp_path / "leaderboard" / "problems.csv")
    assert list(problems["status"]) == ["superseded"]


def test_tune_runs_stay_out_of_suite_tables_and_fgvc_table(tmp_path):
    _write(tmp_path, task="cifar", acc=99.0, protocol="tune")
    for i, task in enumerate(["cub", "nabirds", "oxford_flowers", "stanford_dogs", "stanford_cars"]):
        _write(tmp_path, task=task, acc=10.0 * (i + 1), suite="fgvc")
    written = build(tmp_path).written
    assert "vtab1k" not in written
    fgvc = pd.read_csv(written["fgvc"]).iloc[0]
    assert fgvc["mean_over_tasks"] == pytest.approx(30.0)


def test_cli_reports_missing_results_without_traceback(tmp_path, capsys):
    assert leaderboard_main(["--results-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no run folder" in err and "Traceback" not in err


def test_config_hash_ignores_paths_and_device_but_not_settings():
    cfg = {"trainer": {"lr": 1e-3, "device": "cpu"}, "paths": {"results_dir": "a"}, "data": {"root": "x"}}
    same = json.loads(json.dumps(cfg))
    same["trainer"]["device"] = "cuda"
    same["paths"]["results_dir"] = "b"
    same["data"]["root"] = "y"
    other = json.loads(json.dumps(cfg))
    other["trainer"]["lr"] = 1e-2
    assert config_hash(cfg) == config_hash(same) != config_hash(other)


def test_runs_from_other_weights_at_the_same_path_are_not_averaged_together(tmp_path):
    _write(tmp_path, task="cifar", seed=0, acc=80.0, weights_sha256="a" * 64, finished="2026-01-01T00:00:00")
    _write(tmp_path, task="cifar", seed=0, acc=40.0, weights_sha256="b" * 64, finished="2026-01-02T00:00:00")
    build(tmp_path)
    row = pd.read_csv(tmp_path / "leaderboard" / "vtab1k.csv").iloc[0]
    assert row["cifar"] == pytest.approx(40.0) and row["cifar_n"] == 1  # the newer weights only
    problems = pd.read_csv(tmp_path / "leaderboard" / "problems.csv")
    assert (problems["status"] == "superseded").sum() == 1
