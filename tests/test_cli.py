"""End to end through the console scripts, the way users run them: train -> JSON -> leaderboard.

Each test runs the real entry points in a subprocess with results and data under ``tmp_path``. The first test
writes and trains the default-size embedded task (README command 1's path); the others train on its small copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.tiny_data import embedded_tiny

FAST = ["trainer.epochs=2", "trainer.warmup_epochs=1", "trainer.progress=false", "trainer.device=cpu"]


def _run(tmp_path: Path, *args: str, app: str = "train") -> subprocess.CompletedProcess:
    module = {"train": "peftbench.cli.train", "params": "peftbench.cli.params", "leaderboard": "peftbench.cli.leaderboard"}
    cmd = [sys.executable, "-m", module[app], *args]
    if app == "train":
        cmd += [f"paths.results_dir={tmp_path / 'results'}", f"data.root={tmp_path / 'data'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


def _results(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / "runs").rglob("result.json"))]


@pytest.mark.slow
def test_embedded_default_run_writes_json_and_leaderboard(tmp_path):
    args = ["trainer.infer_iters=0", "trainer.eval_every=1", *FAST]
    proc = _run(tmp_path, "-m", "method=full,linear", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = _results(tmp_path)
    assert sorted(r["method"] for r in results) == ["full", "linear"]
    for r in results:
        assert r["status"] == "success"
        m = r["metrics"]
        assert 0.0 <= m["accuracy"] <= 100.0 and m["accuracy_split"] == "test"
        assert m["trainable_params"] > 0 and m["peak_train_mem_mb"] > 0 and m["infer_img_s"] > 0
        assert m["train_img_s"] > 0 and m["checkpoint_bytes"] > 0 and m["wall_seconds"] > 0
        assert len(r["manifest_sha256"]) == 64 and r["train_split"] == "train800val200"
        assert r["config"]["backbone"]["name"] == "vit_micro" and r["versions"]["torch"]
        assert (Path(r["run_dir"]) / "metrics.csv").exists() and (Path(r["run_dir"]) / "task.safetensors").exists()
    full, linear = sorted(results, key=lambda r: r["method"])
    assert full["metrics"]["trainable_params_without_head"] == full["metrics"]["backbone_params"]
    assert linear["metrics"]["trainable_params_without_head"] == 0
    # infer_iters=0: timed on the final evaluation, except where that ran on cached prefix activations (linear's
    # periodic evaluations, eval_every=1, run on its cached frozen features)
    assert full["metrics"]["infer_img_s_source"].startswith("final evaluation")
    assert linear["metrics"]["infer_img_s_source"].startswith("separate")
    assert full["backbone_weights_sha256"] == linear["backbone_weights_sha256"] and full["registered_method"] == "full"
    # the same data on both runs
    assert full["manifest_sha256"] == linear["manifest_sha256"]

    proc = _run(tmp_path, "--results-dir", str(tmp_path / "results"), app="leaderboard")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "results" / "leaderboard" / "embedded.csv")
    assert sorted(table["method"]) == ["full", "linear"]
    assert set(table["dsprites_loc"]) == {r["metrics"]["accuracy"] for r in results}

    # rerunning the same command skips the finished runs and loses nothing
    before = {r["run_dir"]: r["finished_at"] for r in results}
    proc = _run(tmp_path, "-m", "method=full,linear", *args)
    assert proc.returncode == 0 and proc.stdout.count("finished run exists, skipped") == 2
    assert {r["run_dir"]: r["finished_at"] for r in _results(tmp_path)} == before

    # on_existing=error refuses; overwrite keeps a backup
    proc = _run(tmp_path, "method=linear", *args, "on_existing=error")
    assert proc.returncode == 2 and "on_existing=overwrite" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run(tmp_path, "method=linear", *args, "on_existing=overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(Path(linear["run_dir"]).glob("result.json.bak-*"))


def test_tune_protocol_uses_val200(tmp_path):
    embedded_tiny(tmp_path / "data")  # the small copy of the embedded task (tests/tiny_data.py)
    proc = _run(tmp_path, "protocol=tune", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (r,) = _results(tmp_path)
    assert (r["train_split"], r["eval_split"]) == ("train800", "val200")


@pytest.mark.slow
def test_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    embedded_tiny(tmp_path / "data")  # the small copy of the embedded task (tests/tiny_data.py)
    # lr=1e30 makes full fine-tuning overflow: a real divergence, not a mocked one
    proc = _run(tmp_path, "-m", "method=full", "trainer.lr=1e30,1e-3", *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    statuses = sorted(r["status"] for r in _results(tmp_path))
    assert statuses == ["diverged", "success"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("backbone=vit_nope", ["vit_b16_in21k", "vit_test"]),
        ("method=lorra", ["full", "linear"]),
        ("dataset=vtab/cifar1000", ["cifar", "dtd"]),
    ],
)
def test_unknown_names_list_the_valid_ones(tmp_path, override, expected):
    proc = _run(tmp_path, override, *FAST)
    assert proc.returncode != 0
    assert all(name in proc.stderr + proc.stdout for name in expected)
    assert "Traceback" not in proc.stderr


def test_missing_data_root_explains_the_layout(tmp_path):
    proc = _run(tmp_path, "dataset=vtab/cifar", *FAST)
    assert proc.returncode == 2
    assert "train800val200.txt" in proc.stderr and "data.root" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_bad_values_are_user_errors(tmp_path):
    for override, needle in [("protocol=best", "tune, final"), ("trainer.precision=fp8", "precision"),
                             ("optim.name=adam", "adamw, sgd"), ("+method.rank=4", "no option")]:
        proc = _run(tmp_path, override, *FAST)
        assert proc.returncode == 2, (override, proc.stderr[-1000:])
        assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_params_app_prints_one_json_object(tmp_path):
    proc = _run(tmp_path, "backbone=vit_b16_in21k", "method=linear", app="params")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["trainable_params"] == 769 * 100
    assert out["trainable_params_without_head"] == 0
    assert out["total_params"] == 85_798_656 + 76_900
    assert out["trainable_percent"] == 0.0


@pytest.mark.slow
def test_data_and_checkpoint_errors_through_the_cli(tmp_path):
    from tests.test_data import vtab_tree

    d = vtab_tree(tmp_path / "data", task="dtd")
    (d / "images" / "train800" / "3.png").write_bytes(b"broken")
    proc = _run(tmp_path, "dataset=vtab/dtd", *FAST)
    assert proc.returncode == 2 and "cannot read image" in proc.stderr and "3.png" in proc.stderr
    assert "Traceback" not in proc.stderr
    (r,) = _results(tmp_path)  # the crash is recorded, not lost
    assert r["status"] == "failed" and "cannot read image" in r["message"]

    (d / "test.txt").write_text("images/test/0.png 99\n")
    proc = _run(tmp_path, "dataset=vtab/dtd", "protocol=final", *FAST)
    assert proc.returncode == 2 and "test.txt:1: label 99 is out of range" in proc.stderr

    bad = tmp_path / "not_a_vit.pth"
    import torch

    torch.save({"some.weight": torch.zeros(3)}, bad)
    proc = _run(tmp_path, f"backbone.weights={bad}", *FAST)
    assert proc.returncode == 2 and "missing keys" in proc.stderr and "unexpected keys" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_wandb_logger_runs_offline_without_credentials(tmp_path):
    embedded_tiny(tmp_path / "data")  # the small copy of the embedded task (tests/tiny_data.py)
    proc = _run(tmp_path, "logger=wandb", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = _results(tmp_path)
    assert list(Path(r["run_dir"]).glob("wandb/offline-run-*"))
    assert (Path(r["run_dir"]) / "metrics.csv").exists()  # the CSV log is always written


@pytest.mark.slow
def test_merge_records_merged_against_base_throughput(tmp_path):
    embedded_tiny(tmp_path / "data")  # the small copy of the embedded task (tests/tiny_data.py)
    proc = _run(tmp_path, "method=lora", "trainer.merge=true", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = _results(tmp_path)
    m = r["metrics"]
    assert r["family"] == "partial" and r["subfamily"] == "reparameter"
    assert m["merge_max_abs_diff"] <= 1e-4
    assert m["merged_infer_over_base"] == pytest.approx(m["merged_infer_img_s"] / m["base_infer_img_s"])
    assert (Path(r["run_dir"]) / "merged.safetensors").stat().st_size > m["checkpoint_bytes"]
    proc = _run(tmp_path, "method=linear", "trainer.merge=true", *FAST)
    assert proc.returncode == 2 and "not mergeable" in proc.stderr and not list((tmp_path / "results" / "runs").rglob("linear"))
