"""peftbench-bench prints one JSON object with the fields the performance tables use; the all-methods run
writes the CSV and markdown files. Figures are not checked (they are benchmarks), only their presence."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

FIELDS = {"forward_ms", "train_step_ms", "train_over_forward", "full_ft_over_forward", "peak_train_mem_mb",
          "infer_img_s", "infer_img_s_b1", "infer_img_s_b8", "base_infer_img_s_b1", "base_infer_img_s_b8",
          "merged_infer_over_base", "device", "precision", "status",
          # memory and FLOPs that compare across methods and devices (engine/costs.py)
          "saved_activation_mb", "train_state_mb", "forward_gflops", "merged_forward_gflops", "train_step_gflops",
          "latency_b1_ms"}
MERGED = {"merged_infer_img_s_b1", "merged_infer_img_s_b8"}
HF_PAIR = {"hf_lora_status", "paired_lora_train_step_ms", "hf_lora_train_step_ms", "lora_over_hf_lora_step"}
PROBE = {"probe_status", "probe_forward_pass_ms", "probe_run_ms", "probe_run_over_forward_pass"}
SMALL = ["bench.batch_size=8", "bench.infer_batch_sizes=[1,8]", "bench.iters=2", "bench.repeats=2", "bench.warmup=1",
         "bench.probe_images=32", "bench.probe_epochs=3", "bench.num_threads=1"]


def _bench(tmp_path, *overrides: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "peftbench.cli.bench", *SMALL, *overrides],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _positive(out: dict, keys: set[str]) -> None:
    for key in keys:
        assert isinstance(out[key], float) and math.isfinite(out[key]) and out[key] > 0, key


@pytest.mark.parametrize("method", ["linear", "lora"])
def test_bench_json_fields(tmp_path, method):
    csv = tmp_path / "bench.csv"
    out = _bench(tmp_path, f"method={method}", f"csv={csv}")
    assert FIELDS <= set(out) and out["method"] == method and out["status"] == "ok"
    _positive(out, {"forward_ms", "train_step_ms", "full_ft_over_forward", "infer_img_s_b1", "infer_img_s_b8"})
    assert out["train_over_forward"] == pytest.approx(out["train_step_ms"] / out["forward_ms"])
    if method == "lora":  # mergeable, and timed beside PEFT's LoRA
        assert MERGED | HF_PAIR <= set(out) and out["hf_lora_status"] == "ok"
        _positive(out, {"merged_infer_over_base", "lora_over_hf_lora_step"} | MERGED)
        assert out["lora_over_hf_lora_step"] == pytest.approx(
            out["paired_lora_train_step_ms"] / out["hf_lora_train_step_ms"])
    else:  # a linear probe caches the whole backbone: the VTAB-1k-shaped run is measured
        assert out["merged_infer_over_base"] is None and PROBE <= set(out) and out["probe_status"] == "ok"
        assert out["probe_prefix_cached_through"] == "pre_logits"
        _positive(out, {"probe_run_over_forward_pass"})
    assert csv.read_text().count("\n") == 2  # header + one row


def test_all_methods_writes_device_csv_and_markdown(tmp_path):
    out = _bench(tmp_path, "all_methods=true", "methods=[linear,lst]", "out_dir=bench", "bench.compare_hf_lora=false",
                 "bench.probe_methods=[lst]")
    assert out["methods"] == 2 and out["failed"] == []
    csv, md = tmp_path / out["csv"], tmp_path / out["markdown"]
    assert csv.parent == tmp_path / "bench" and csv.stem == md.stem and csv.suffix == ".csv"
    frame = pd.read_csv(csv)
    assert list(frame["method"]) == ["linear", "lst"] and set(frame["status"]) == {"ok"}
    assert FIELDS - {"merged_infer_over_base"} <= set(frame.columns)  # empty for both: neither is mergeable
    assert frame.set_index("method")["probe_status"]["linear"] == "skipped: not in bench.probe_methods"
    text = md.read_text()
    assert "timm `vit_tiny_patch16_224`, 32x32 px" in text and "M params" in text
    if hasattr(os, "sched_getaffinity"):  # the taskset pinning is recorded
        assert f"pinned to CPUs {','.join(map(str, sorted(os.sched_getaffinity(0))))} of {os.cpu_count()}" in text
    assert text.count("`peftbench-bench ") == 1 and "all_methods=true methods=[linear,lst] out_dir=bench" in text
    assert "| method | status | train_over_forward |" in text and text.count("\n| l") == 2


def test_unknown_methods_are_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "peftbench.cli.bench", "all_methods=true", "methods=[linear,lorra]", *SMALL],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )
    assert proc.returncode == 2 and "lorra" in proc.stderr and "Traceback" not in proc.stderr


def test_methods_with_per_task_settings_get_the_bench_task():
    import dataclasses

    from peftbench.apps.bench import BenchConfig
    from peftbench.assemble import MethodSpec, make_method

    cfg = BenchConfig(task="dtd", suite="vtab")  # what run_bench hands the method builder
    noah = make_method(MethodSpec("noah", "noah"), cfg.task, cfg.suite)
    assert (noah.config.task, noah.config.suite) == ("dtd", "vtab")  # NOAH's published subnet of that task
    kept = make_method(MethodSpec("noah", "noah", {"task": "cifar"}), cfg.task, cfg.suite)
    assert kept.config.task == "cifar"  # a set task is kept
    lora = make_method(MethodSpec("lora", "lora", {"rank": 4}), cfg.task, cfg.suite)
    assert "task" not in dataclasses.asdict(lora.config) and lora.config.rank == 4  # no per-task settings
