"""Test order for the two pytest-xdist workers: longest first.

``--dist loadgroup`` hands tests (and each xdist group as one unit) to the workers in collection order. Collected
alphabetically, the SLURM group and the multi-run end-to-end tests came last, and one worker ran them alone while
the other had finished: about three minutes of a 2-core run on one core. Running the SLURM group first, then the
tests marked ``slow``, then the rest, keeps both workers busy to the end. Within each rank the order is unchanged.
"""

from __future__ import annotations

import pytest


def _rank(item: pytest.Item) -> int:
    if item.get_closest_marker("slurm"):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the collection order within a rank
