"""The submitit-based local launcher behind :mod:`peftbench.sweeps.launchers` (imported only when a sweep uses
``hydra/launcher=local``, so Hydra commands work without the ``sweeps`` extra; SLURM: :mod:`peftbench.sweeps.slurm`).

* :class:`LocalParallelLauncher`: several runs side by side on one machine, each in its own process
  started by submitit's local executor. With GPUs, one run per GPU at a time: each job sees exactly
  one device (``CUDA_VISIBLE_DEVICES``), so ``trainer.device=auto`` lands on it. On CPU,
  ``parallel`` runs at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

from peftbench.errors import ConfigError


def visible_gpus() -> list[int]:
    """GPU indices this process may use: ``CUDA_VISIBLE_DEVICES`` when it lists indices, else all."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None and all(tok.strip().isdigit() for tok in listed.split(",") if tok.strip()):
        return [int(tok) for tok in listed.split(",") if tok.strip()]
    import torch

    return list(range(torch.cuda.device_count()))


class LocalParallelLauncher(BaseSubmititLauncher):
    """Run a multirun's jobs as local processes, at most ``parallel`` at a time, one GPU each.

    Args:
        parallel: runs at once; ``null`` = one per visible GPU (1 without GPUs).
        gpus: GPU indices to hand out; ``null`` = the visible ones. Empty on CPU-only machines.
        poll_s: how often finished jobs are checked for.
        **params: the submitit local executor's settings (``timeout_min``, ``submitit_folder``, ...).
    """

    _EXECUTOR = "local"

    def __init__(self, parallel: int | None = None, gpus: Sequence[int] | None = None, poll_s: float = 0.5,
                 **params: Any) -> None:
        super().__init__(**params)
        self.gpus = list(gpus) if gpus is not None else visible_gpus()
        self.parallel = parallel if parallel is not None else max(1, len(self.gpus))
        if self.parallel < 1:
            raise ConfigError(f"hydra.launcher.parallel must be >= 1 (runs at once), got {self.parallel}")
        if self.gpus and self.parallel > len(self.gpus):
            raise ConfigError(
                f"hydra.launcher.parallel={self.parallel} but only GPUs {self.gpus} are available (one run per GPU); "
                f"lower it or leave it null"
            )
        self.poll_s = poll_s

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in self.params.items() if k in ("timeout_min", "signal_delay_s", "stderr_to_stdout")}
        free = list(range(self.parallel))  # slot i uses GPU self.gpus[i] when there are GPUs
        running: dict[int, Any] = {}
        jobs: list[Any] = []
        for offset, overrides in enumerate(job_overrides):
            while not free:
                time.sleep(self.poll_s)
                for slot, job in list(running.items()):
                    if job.done():
                        del running[slot]
                        free.append(slot)
            slot = free.pop(0)
            executor = submitit.LocalExecutor(folder=self.params["submitit_folder"])
            gpu = [self.gpus[slot]] if self.gpus else []
            executor.update_parameters(**settings, gpus_per_node=len(gpu), visible_gpus=gpu)
            idx = initial_job_idx + offset
            print(f"[peftbench] launching #{idx} (slot {slot}{f', GPU {gpu[0]}' if gpu else ''}): {' '.join(overrides)}")
            job = executor.submit(self, list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                  Singleton.get_state())
            running[slot] = job
            jobs.append(job)
        return [job.result() for job in jobs]
