"""Launchers selected with hydra/launcher=...: a tiny sweep through submitit's local executor, the SLURM
launcher's checks and messages (on a real cluster: tests/test_sweep_slurm.py), and one wandb group per sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny_data import embedded_tiny

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_SILENT": "true"}
FAST = ["trainer.epochs=1", "trainer.warmup_epochs=0", "trainer.progress=false", "trainer.device=cpu"]


def _train(tmp_path: Path, *args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "peftbench.cli.train", *args, *FAST,
           f"paths.results_dir={tmp_path / 'results'}", f"data.root={tmp_path / 'data'}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


def _results(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / "runs").rglob("result.json"))]


@pytest.mark.slow
def test_local_parallel_launcher_runs_a_tiny_sweep_in_submitit_processes(tmp_path):
    embedded_tiny(tmp_path / "data")  # the small copy of the embedded task (tests/tiny_data.py)
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
    # a machine without SLURM's commands (a PATH without them, also where SLURM is installed)
    (tmp_path / "bin").mkdir()
    proc = _train(tmp_path, "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "method=linear",
                  env={**ENV, "PATH": str(tmp_path / "bin")})
    assert proc.returncode == 2 and "sbatch" in proc.stderr and "login node" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "results" / "runs").exists()


@pytest.mark.parametrize(("said", "key", "listing"), [
    # sbatch's messages (SLURM's slurm_errno.c texts) -> the setting to change and how to list valid values
    ("sbatch: error: invalid partition specified: gpu", "hydra.launcher.partition", "sinfo -s"),
    ("sbatch: error: Invalid generic resource (gres) specification", "hydra.launcher.gpus_per_node=0", "sinfo -o"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
     "hydra.launcher.account", "sacctmgr show associations"),
    ("sbatch: error: Batch job submission failed: Invalid qos specification", "hydra.launcher.qos",
     "sacctmgr show qos"),
    ("sbatch: error: Memory specification can not be satisfied", "hydra.launcher.mem_gb", "sinfo -o"),
    ("sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)",
     "hydra.launcher.timeout_min", "sinfo -o"),
    ("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's "
     "size and/or time limits)", "hydra.launcher.qos", "sacctmgr show qos"),
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
     "hydra/launcher=local", "login node"),
    ("sbatch: error: something new", "hydra.launcher.partition", "scontrol show partition"),
])
def test_each_sbatch_refusal_names_the_setting_and_the_listing_command(said, key, listing):
    from peftbench.sweeps.slurm_commands import refusal_advice

    text = refusal_advice(said).text()
    assert key in text and listing in text, text


def test_pipelines_find_a_launched_run_whatever_precision_its_node_resolved(tmp_path):
    from peftbench.config import compose
    from peftbench.identity import config_hash, launched_result, run_dir

    cfg = compose([f"paths.results_dir={tmp_path}"])  # precision: auto
    cpu, gpu = (run_dir(tmp_path, cfg, config_hash(cfg, p)) / "result.json" for p in ("fp32", "bf16"))
    assert launched_result(cfg) == cpu  # nothing yet: where a CPU run would write
    gpu.parent.mkdir(parents=True)
    gpu.write_text("{}")
    assert launched_result(cfg) == gpu  # the job ran on a GPU node: bf16
    cpu.parent.mkdir(parents=True)
    cpu.write_text("{}")
    os.utime(gpu, (1, 1))
    assert launched_result(cfg) == cpu  # the newest one


@pytest.mark.slow
def test_wandb_runs_of_one_sweep_share_a_group_and_stay_offline(tmp_path):
    embedded_tiny(tmp_path / "data")  # the small copy of the embedded task (tests/tiny_data.py)
    proc = _train(tmp_path, "-m", "logger=wandb", "method=linear,bitfit")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the default sweep folder is named by its start time, which appears nowhere on the command line
    (sweep_dir,) = (tmp_path / "results" / "logs" / "hydra").glob("multirun-*")
    for r in _results(tmp_path):
        (run,) = Path(r["run_dir"]).glob("wandb/offline-run-*/run-*.wandb")  # offline: nothing uploaded
        assert sweep_dir.name.encode() in run.read_bytes()  # the group: the sweep folder's name


# -- several runs per GPU (hydra.launcher.runs_per_gpu): the assignment, and what each job process sees ---------
class _Job:
    """A job that finishes after being polled ``polls`` times; it notes how many ran on its GPU with it."""

    def __init__(self, gpu, running, polls):
        self.gpu, self.running, self.polls = gpu, running, polls
        running[gpu] = running.get(gpu, 0) + 1
        self.peak = dict(running)

    def done(self):
        self.polls -= 1
        if self.polls == 0:
            self.running[self.gpu] -= 1
        return self.polls <= 0


def test_runs_per_gpu_shares_each_gpu_and_never_more():
    from peftbench.sweeps.submitit_launchers import gpu_slots, run_in_slots

    assert gpu_slots([0, 1], 2) == [0, 1, 0, 1] and gpu_slots([3], 1) == [3] and gpu_slots([], 4) == []
    running, gpus = {}, []

    def submit(index, item, slot, gpu):
        gpus.append((index, slot, gpu))
        return _Job(gpu, running, polls=1 + index % 3)

    jobs = run_in_slots(list(range(9)), 4, gpu_slots([0, 1], 2), submit, poll_s=0)
    assert len(jobs) == 9 and [i for i, _, _ in gpus] == list(range(9))
    assert [g for _, _, g in gpus[:4]] == [0, 1, 0, 1]  # the first four fill both GPUs twice
    assert max(count for job in jobs for count in job.peak.values()) == 2  # never three on one GPU
    # fewer runs at once than slots: spread over the GPUs first
    running.clear()
    gpus.clear()
    run_in_slots(list(range(4)), 2, gpu_slots([0, 1], 2), submit, poll_s=0)
    assert {g for _, _, g in gpus} == {0, 1}


def test_each_local_job_process_sees_only_its_gpu(tmp_path):
    """Real submitit processes report their CUDA_VISIBLE_DEVICES (on a CPU machine: the variable CUDA would read)."""
    import submitit

    from peftbench.sweeps.submitit_launchers import gpu_slots, run_in_slots

    assigned = []

    def submit(index, item, slot, gpu):  # as the launcher submits: one GPU per job, that GPU only
        assigned.append(str(gpu))
        executor = submitit.LocalExecutor(folder=tmp_path / "%j")
        executor.update_parameters(timeout_min=2, gpus_per_node=1, visible_gpus=[gpu])
        return executor.submit(os.getenv, "CUDA_VISIBLE_DEVICES")

    slots = gpu_slots([0, 1], 2)
    jobs = run_in_slots(list(range(5)), len(slots), slots, submit, poll_s=0.1)  # the fifth waits for a free slot
    assert [job.result() for job in jobs] == assigned and assigned[:4] == ["0", "1", "0", "1"]


def test_runs_per_gpu_is_checked_against_parallel_and_gpus(tmp_path):
    from peftbench.errors import ConfigError
    from peftbench.sweeps.submitit_launchers import LocalParallelLauncher

    folder = str(tmp_path / "%j")
    launcher = LocalParallelLauncher(gpus=[0, 1], runs_per_gpu=3, submitit_folder=folder)
    assert launcher.parallel == 6 and launcher.slot_gpus == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ConfigError, match="runs_per_gpu=2 take 4 runs at once"):
        LocalParallelLauncher(gpus=[0, 1], runs_per_gpu=2, parallel=5, submitit_folder=folder)
    with pytest.raises(ConfigError, match="integer >= 1"):
        LocalParallelLauncher(gpus=[0], runs_per_gpu=0, submitit_folder=folder)
    assert LocalParallelLauncher(gpus=[], runs_per_gpu=4, submitit_folder=folder).parallel == 1  # CPU: parallel
