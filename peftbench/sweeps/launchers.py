"""Hydra launchers for sweeps (``hydra/launcher=local`` / ``slurm``), light to import.

Hydra imports every plugin module when a command starts, so these classes depend on Hydra alone; the
submitit-based work is in :mod:`peftbench.sweeps.submitit_launchers` and :mod:`peftbench.sweeps.slurm`, imported
when a sweep is launched with one of them. Without the ``sweeps`` extra a plain command therefore runs quietly, and a sweep that asks for
one of these launchers stops with the install command.

* ``local``: several runs side by side on one machine, one GPU each (:class:`~peftbench.sweeps.
  submitit_launchers.LocalParallelLauncher`);
* ``slurm``: submitit's SLURM launcher (:mod:`peftbench.sweeps.slurm`), refusing to start without a partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

from peftbench.errors import ConfigError, user_error_exit

EXTRA_HINT = "pip install 'peftbench[sweeps]' (hydra-submitit-launcher and submitit)"


class _Deferred(Launcher):
    """Keep the launcher's settings; build the submitit implementation when Hydra sets the launcher up."""

    _impl_name = ""
    _impl_module = "peftbench.sweeps.submitit_launchers"

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.impl: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        import importlib

        try:
            module = importlib.import_module(self._impl_module)
        except ImportError as exc:
            raise user_error_exit(ConfigError(
                f"hydra/launcher={self._launcher_name()} needs the sweeps extra, which is not installed ({exc}); "
                f"install it with {EXTRA_HINT}, or drop hydra/launcher to run the sweep one job after another"
            )) from None
        self.impl = getattr(module, self._impl_name)(**self.params)
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.impl.launch(job_overrides, initial_job_idx)

    def _launcher_name(self) -> str:
        return self._impl_name.removesuffix("Launcher").replace("Parallel", "").lower()


class LocalParallelLauncher(_Deferred):
    """Local processes, at most ``parallel`` at a time, one GPU each (see the implementation's docstring)."""

    _impl_name = "LocalParallelLauncher"


class SlurmLauncher(_Deferred):
    """Hydra's submitit SLURM launcher (:mod:`peftbench.sweeps.slurm`); ``hydra.launcher.partition`` is required."""

    _impl_name = "SlurmLauncher"
    _impl_module = "peftbench.sweeps.slurm"

    def __init__(self, **params: Any) -> None:
        if not params.get("partition"):
            raise user_error_exit(ConfigError(
                "hydra/launcher=slurm needs a partition: add hydra.launcher.partition=<name> to the command "
                "(`sinfo -s` lists the cluster's partitions); other settings: hydra.launcher.timeout_min, "
                "gpus_per_node, cpus_per_task, mem_gb, account, qos"
            ))
        super().__init__(**params)
