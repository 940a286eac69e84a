"""A killed sweep, relaunched with the same command, finishes without redoing or duplicating runs.

2 methods x 2 tasks x 2 seeds on the small copies of the embedded tasks (tests/tiny_data.py), the multirun process really killed after some
runs finished, then the same command again: exactly 8 runs in the leaderboard.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from peftbench.paths import group_options
from tests.tiny_data import embedded_tiny

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _task_axis() -> list[str]:
    """Two embedded tasks: the default dSprites-location proxy and its orientation sibling; if the
    latter is missing, two configs of the one task (bicubic vs bilinear resizing: distinct runs)."""
    if "embedded/dsprites_ori" in group_options("dataset"):
        return ["dataset=embedded/dsprites_loc,embedded/dsprites_ori"]
    return ["dataset=embedded/dsprites_loc", "data.interpolation=bicubic,bilinear"]


def _sweep(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "peftbench.cli.train", "-m", "method=linear,bitfit", *_task_axis(), "seed=0,1",
            "trainer.epochs=1", "trainer.warmup_epochs=0", "trainer.progress=false", "trainer.device=cpu",
            f"paths.results_dir={tmp_path / 'results'}", f"data.root={tmp_path / 'data'}"]


def _statuses(tmp_path: Path) -> list[str]:
    out = []
    for p in (tmp_path / "results" / "runs").rglob("result.json"):
        try:
            out.append(json.loads(p.read_text())["status"])
        except (OSError, ValueError):  # being replaced right now
            out.append("unreadable")
    return out


def test_killed_sweep_relaunched_gives_exactly_eight_rows(tmp_path):
    for task in ("dsprites_loc", "dsprites_ori"):
        embedded_tiny(tmp_path / "data", task)
    proc = subprocess.Popen(_sweep(tmp_path), cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and _statuses(tmp_path).count("success") < 3:
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    before = _statuses(tmp_path)
    finished = before.count("success")
    assert 3 <= finished < 8

    rerun = subprocess.run(_sweep(tmp_path), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("finished run exists, skipped") == finished  # not redone

    proc = subprocess.run([sys.executable, "-m", "peftbench.cli.leaderboard", "--results-dir", str(tmp_path / "results")],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = pd.read_csv(tmp_path / "results" / "leaderboard" / "runs.csv")
    assert len(runs) == 8 and set(runs["status"]) == {"success"}
    assert runs["config_hash"].nunique() == 8
    assert sorted(runs.groupby(["method", "seed"]).size()) == [2, 2, 2, 2]
