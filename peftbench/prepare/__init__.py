"""Data preparation: build the VTAB-1k and FGVC layouts the readers in :mod:`peftbench.data` read,
and check prepared trees against the protocol (``peftbench-prepare vtab | fgvc | verify``)."""

from __future__ import annotations

from peftbench.prepare.fgvc import prepare_fgvc
from peftbench.prepare.protocol import FGVC_DATASETS, VTAB_TASKS
from peftbench.prepare.verify import Report, verify
from peftbench.prepare.vtab import TORCHVISION, prepare_vtab

__all__ = ["FGVC_DATASETS", "TORCHVISION", "VTAB_TASKS", "Report", "prepare_fgvc", "prepare_vtab", "verify"]
