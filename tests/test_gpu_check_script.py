"""scripts/gpu_check.sh parses, and refuses unknown arguments with exit 2 (its --smoke run takes a minute on a
CPU and is run by hand: `bash scripts/gpu_check.sh --smoke`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_an_unknown_argument_is_refused_with_the_valid_ones():
    proc = subprocess.run(["bash", str(SCRIPT), "--fast"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--smoke" in proc.stderr and "--wheels" in proc.stderr
