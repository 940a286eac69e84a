"""``peftbench-tune``: tune on train800/val200, select on val accuracy, final on train800val200/test,
end to end on the embedded default (grid and Optuna)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
FAST = ["method=linear", "trainer.epochs=1", "trainer.warmup_epochs=0", "trainer.progress=false", "trainer.device=cpu"]


def _tune(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "peftbench.cli.tune", *FAST, *args,
           f"paths.results_dir={tmp_path / 'results'}", f"data.root={tmp_path / 'data'}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)


def _by_protocol(tmp_path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"tune": [], "final": []}
    for p in sorted((tmp_path / "results" / "runs").rglob("result.json")):
        r = json.loads(p.read_text())
        out[r["protocol"]].append(r)
    return out


def _check_selection(runs: dict[str, list[dict]], search: str) -> dict:
    (final,) = runs["final"]
    assert final["status"] == "success"
    assert (final["train_split"], final["eval_split"]) == ("train800val200", "test")
    for t in runs["tune"]:
        assert (t["train_split"], t["eval_split"]) == ("train800", "val200")
    tuning = final["tuning"]
    assert tuning["search"] == search
    assert sorted(c["run_dir"] for c in tuning["candidates"]) == sorted(t["run_dir"] for t in runs["tune"])
    best = max(runs["tune"], key=lambda t: (t["metrics"]["accuracy"], -t["config"]["trainer"]["lr"]))
    assert tuning["selected_run"] == best["run_dir"]
    assert tuning["selected_val_accuracy"] == best["metrics"]["accuracy"]
    chosen = {"trainer.lr": best["config"]["trainer"]["lr"], "trainer.weight_decay": best["config"]["trainer"]["weight_decay"]}
    assert tuning["selected"] == chosen
    assert (final["config"]["trainer"]["lr"], final["config"]["trainer"]["weight_decay"]) == tuple(chosen.values())
    return final


@pytest.mark.slow
def test_grid_tune_selects_on_val_and_runs_final(tmp_path):
    proc = _tune(tmp_path, "trainer.lr=1e-3,1e-1", "trainer.weight_decay=0.0")  # a 2 x 1 grid
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _by_protocol(tmp_path)
    assert len(runs["tune"]) == 2 and {t["status"] for t in runs["tune"]} == {"success"}
    assert sorted(t["config"]["trainer"]["lr"] for t in runs["tune"]) == [1e-3, 1e-1]
    final = _check_selection(runs, "grid")

    # relaunching the same command redoes nothing and keeps the selection record
    proc = _tune(tmp_path, "trainer.lr=1e-3,1e-1", "trainer.weight_decay=0.0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("finished run exists, skipped") == 3
    again = _by_protocol(tmp_path)
    assert again["final"][0]["finished_at"] == final["finished_at"] and again["final"][0]["tuning"]["selected"]


@pytest.mark.slow
def test_optuna_tune_selects_on_val_and_runs_final(tmp_path):
    proc = _tune(tmp_path, "search=optuna", "hydra.sweeper.n_trials=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _by_protocol(tmp_path)
    assert len(runs["tune"]) == 2
    _check_selection(runs, "optuna")


@pytest.mark.parametrize(("arg", "needle"), [("protocol=final", "protocol=tune"), ("search=random", "grid, optuna")])
def test_tune_user_errors(tmp_path, arg, needle):
    proc = _tune(tmp_path, arg)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()
