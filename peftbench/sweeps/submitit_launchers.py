"""The submitit-based local launcher behind :mod:`peftbench.sweeps.launchers` (imported only when a sweep uses
``hydra/launcher=local``, so Hydra commands work without the ``sweeps`` extra; SLURM: :mod:`peftbench.sweeps.slurm`).

* :class:`LocalParallelLauncher`: several runs side by side on one machine, each in its own process
  started by submitit's local executor. With GPUs, ``runs_per_gpu`` runs per GPU at a time (default 1):
  each job sees exactly one device (``CUDA_VISIBLE_DEVICES``), so ``trainer.device=auto`` lands on it. On
  CPU, ``parallel`` runs at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

from peftbench.errors import ConfigError

T = TypeVar("T")


def visible_gpus() -> list[int]:
    """GPU indices this process may use: ``CUDA_VISIBLE_DEVICES`` when it lists indices, else all."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None and all(tok.strip().isdigit() for tok in listed.split(",") if tok.strip()):
        return [int(tok) for tok in listed.split(",") if tok.strip()]
    import torch

    return list(range(torch.cuda.device_count()))


def gpu_slots(gpus: Sequence[int], runs_per_gpu: int) -> list[int]:
    """The GPU of each run slot: ``runs_per_gpu`` slots per GPU, one round over the GPUs after another, so that
    fewer runs than slots still spread over every GPU (``[0, 1], 2 -> [0, 1, 0, 1]``)."""
    return [gpu for _ in range(runs_per_gpu) for gpu in gpus]


def run_in_slots(items: Sequence[T], parallel: int, slot_gpus: Sequence[int],
                 submit: Callable[[int, T, int, int | None], Any], poll_s: float = 0.5) -> list[Any]:
    """Submit ``items`` in order, at most ``parallel`` at once, each to the lowest free slot.

    Args:
        items: what to run.
        parallel: slots (runs at once).
        slot_gpus: the GPU of each slot (:func:`gpu_slots`); empty on CPU.
        submit: ``submit(index, item, slot, gpu)`` starts one run (``gpu`` None on CPU) and returns a job with
            ``done()``.
        poll_s: how often running jobs are checked for completion.

    Returns:
        The jobs, in the order of ``items``.
    """
    free = list(range(parallel))
    running: dict[int, Any] = {}
    jobs: list[Any] = []
    for index, item in enumerate(items):
        while not free:
            time.sleep(poll_s)
            for slot, job in list(running.items()):
                if job.done():
                    del running[slot]
                    free.append(slot)
            free.sort()
        slot = free.pop(0)
        running[slot] = submit(index, item, slot, slot_gpus[slot] if slot_gpus else None)
        jobs.append(running[slot])
    return jobs


class LocalParallelLauncher(BaseSubmititLauncher):
    """Run a multirun's jobs as local processes, at most ``parallel`` at a time, each seeing one GPU.

    Args:
        parallel: runs at once; ``null`` = ``runs_per_gpu`` per visible GPU (1 without GPUs).
        gpus: GPU indices to hand out; ``null`` = the visible ones. Empty on CPU-only machines.
        runs_per_gpu: runs sharing one GPU at a time (small runs, e.g. VTAB-1k on ViT-B, leave a large GPU
            mostly idle); each still sees only its GPU.
        poll_s: how often finished jobs are checked for.
        **params: the submitit local executor's settings (``timeout_min``, ``submitit_folder``, ...).
    """

    _EXECUTOR = "local"

    def __init__(self, parallel: int | None = None, gpus: Sequence[int] | None = None, runs_per_gpu: int = 1,
                 poll_s: float = 0.5, **params: Any) -> None:
        super().__init__(**params)
        if not isinstance(runs_per_gpu, int) or runs_per_gpu < 1:
            raise ConfigError(f"hydra.launcher.runs_per_gpu must be an integer >= 1 (runs sharing one GPU), "
                              f"got {runs_per_gpu!r}")
        self.gpus = list(gpus) if gpus is not None else visible_gpus()
        self.slot_gpus = gpu_slots(self.gpus, runs_per_gpu)
        self.parallel = parallel if parallel is not None else max(1, len(self.slot_gpus))
        if self.parallel < 1:
            raise ConfigError(f"hydra.launcher.parallel must be >= 1 (runs at once), got {self.parallel}")
        if self.gpus and self.parallel > len(self.slot_gpus):
            raise ConfigError(
                f"hydra.launcher.parallel={self.parallel} but GPUs {self.gpus} with runs_per_gpu={runs_per_gpu} take "
                f"{len(self.slot_gpus)} runs at once; lower it, raise hydra.launcher.runs_per_gpu, or leave it null"
            )
        if not self.gpus and runs_per_gpu > 1:
            print(f"[peftbench] no GPU visible: hydra.launcher.runs_per_gpu={runs_per_gpu} has no effect; "
                  f"{self.parallel} run(s) at once on the CPU (hydra.launcher.parallel)")
        self.poll_s = poll_s

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in self.params.items() if k in ("timeout_min", "signal_delay_s", "stderr_to_stdout")}

        def submit(offset: int, overrides: Sequence[str], slot: int, gpu: int | None) -> Any:
            executor = submitit.LocalExecutor(folder=self.params["submitit_folder"])
            visible = [] if gpu is None else [gpu]  # the job's CUDA_VISIBLE_DEVICES: its GPU only (none on CPU)
            executor.update_parameters(**settings, gpus_per_node=len(visible), visible_gpus=visible)
            idx = initial_job_idx + offset
            print(f"[peftbench] launching #{idx} (slot {slot}{f', GPU {gpu}' if gpu is not None else ''}): "
                  f"{' '.join(overrides)}")
            return executor.submit(self, list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                   Singleton.get_state())

        jobs = run_in_slots(job_overrides, self.parallel, self.slot_gpus, submit, self.poll_s)
        return [job.result() for job in jobs]
