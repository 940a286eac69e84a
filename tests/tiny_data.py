"""Small copies of the embedded task for the end-to-end tests.

The tests that launch several runs (resume, sweeps, tune, search, SLURM) test the run machinery, not the
data: the same generator and folder layout with 48 / 24 / 24 images instead of 800 / 200 / 500 keeps each
run to about a second of training on one CPU thread. The default-size task is still written and trained by
``tests/test_cli.py`` (README command 1's path) and ``tests/test_data_embedded.py``.
"""

from __future__ import annotations

from pathlib import Path

TINY_SIZES = {"train800": 48, "val200": 24, "test": 24}


def embedded_tiny(root: Path, task: str = "dsprites_loc") -> Path:
    """Write the embedded task ``task`` with ``TINY_SIZES`` under ``root`` (a ``data.root``); return ``root``."""
    from peftbench.data import embedded

    saved = embedded.SPLIT_SIZES
    embedded.SPLIT_SIZES = dict(TINY_SIZES)
    try:
        embedded.ensure_embedded(task, root / "vtab-1k" / f"embedded_{task}")
    finally:
        embedded.SPLIT_SIZES = saved
    return root
