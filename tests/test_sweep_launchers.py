"""Launchers selected with hydra/launcher=...: a tiny sweep through submitit's local executor, the SLURM
launcher's checks, and one wandb group per sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true"}
FAST = ["trainer.epochs=1", "trainer.warmup_epochs=0", "trainer.progress=false", "trainer.device=cpu"]


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "peftbench.cli.train", *args, *FAST,
           f"paths.results_dir={tmp_path / 'results'}", f"data.root={tmp_path / 'data'}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=600)


def _results(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / "runs").rglob("result.json"))]


@pytest.mark.slow
def test_local_parallel_launcher_runs_a_tiny_sweep_in_submitit_processes(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = _train(tmp_path, "-m", "hydra/launcher=local", "hydra.launcher.parallel=2", f"hydra.sweep.dir={sweep_dir}",
                  "method=linear,bitfit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launching #0 (slot 0)" in proc.stdout and "launching #1 (slot 1)" in proc.stdout
    results = _results(tmp_path)
    assert sorted(r["method"] for r in results) == ["bitfit", "linear"]
    assert {r["status"] for r in results} == {"success"}
    # each job ran in its own submitit process, which left its log in the sweep folder
    logs = list((sweep_dir / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2 and all("success" in p.read_text() for p in logs)
    pids = {p.name.split("_")[0] for p in logs}
    assert len(pids) == 2 and str(os.getpid()) not in pids


def test_slurm_launcher_needs_a_partition_and_a_cluster(tmp_path):
    proc = _train(tmp_path, "-m", "hydra/launcher=slurm", "method=linear")
    assert proc.returncode == 2 and "hydra.launcher.partition=<name>" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "results" / "runs").exists()
    proc = _train(tmp_path, "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "method=linear")
    if proc.returncode == 0:
        pytest.skip("a SLURM cluster is reachable from here")
    assert proc.returncode == 2 and "sbatch" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results" / "runs").exists()


@pytest.mark.slow
def test_wandb_runs_of_one_sweep_share_a_group_and_stay_offline(tmp_path):
    proc = _train(tmp_path, "-m", "logger=wandb", "method=linear,bitfit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the default sweep folder is named by its start time, which appears nowhere on the command line
    (sweep_dir,) = (tmp_path / "results" / "logs" / "hydra").glob("multirun-*")
    for r in _results(tmp_path):
        (run,) = Path(r["run_dir"]).glob("wandb/offline-run-*/run-*.wandb")  # offline: nothing uploaded
        assert sweep_dir.name.encode() in run.read_bytes()  # the group: the sweep folder's name
