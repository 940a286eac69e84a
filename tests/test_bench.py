"""peftbench-bench prints one JSON object with the fields the performance tables use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

FIELDS = {"forward_ms", "train_step_ms", "train_over_forward", "full_ft_over_forward", "peak_train_mem_mb",
          "infer_img_s", "infer_img_s_b1", "infer_img_s_b8", "merged_infer_over_base", "device"}


@pytest.mark.parametrize("method", ["linear", "full"])
def test_bench_json_fields(tmp_path, method):
    csv = tmp_path / "bench.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "peftbench.cli.bench", f"method={method}", "bench.batch_size=8",
         "bench.infer_batch_sizes=[1,8]", "bench.iters=2", "bench.warmup=1", f"csv={csv}"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert FIELDS <= set(out)
    assert out["method"] == method and out["train_step_ms"] > 0 and out["forward_ms"] > 0
    assert out["train_over_forward"] == pytest.approx(out["train_step_ms"] / out["forward_ms"])
    assert csv.read_text().count("\n") == 2  # header + one row
