"""Hydra discovers launchers and sweepers only in the ``hydra_plugins`` namespace: these names make peftbench's
launchers selectable (``hydra/launcher=local`` / ``slurm``); the code is in :mod:`peftbench.sweeps.launchers` (it imports submitit only when a sweep uses one). ``hydra/sweeper=jobs`` launches a list of jobs
(:mod:`peftbench.sweeps.job_list`, peftbench-tune's trials)."""

from __future__ import annotations

from peftbench.sweeps import job_list as _jobs
from peftbench.sweeps import launchers as _impl


class LocalParallelLauncher(_impl.LocalParallelLauncher):
    """See :class:`peftbench.sweeps.launchers.LocalParallelLauncher`."""


class SlurmLauncher(_impl.SlurmLauncher):
    """See :class:`peftbench.sweeps.launchers.SlurmLauncher`."""


class JobListSweeper(_jobs.JobListSweeper):
    """See :class:`peftbench.sweeps.job_list.JobListSweeper`."""
