"""Hydra discovers launchers only in the ``hydra_plugins`` namespace: these names make peftbench's
launchers selectable (``hydra/launcher=local`` / ``slurm``); the code is in :mod:`peftbench.sweeps.launchers` (it imports submitit only when a sweep uses one)."""

from __future__ import annotations

from peftbench.sweeps import launchers as _impl


class LocalParallelLauncher(_impl.LocalParallelLauncher):
    """See :class:`peftbench.sweeps.launchers.LocalParallelLauncher`."""


class SlurmLauncher(_impl.SlurmLauncher):
    """See :class:`peftbench.sweeps.launchers.SlurmLauncher`."""
