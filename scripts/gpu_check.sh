#!/usr/bin/env bash
# What only a GPU shows, in one command of at most 10 minutes on an H100-class GPU:
#   1. peftbench-bench on ViT-B/16 (bf16 autocast, batch 64) for lora, adapter, vpt_deep, ssf, full and lst:
#      training step / forward, saved activations, train state, device peak, FLOPs, throughput, batch-1 latency
#      -> results/benchmarks/<device>.csv and .md (machine, versions and the exact command inside);
#   2. one VTAB-1k-shaped LoRA run (the embedded task's 1000 training images resized to 224 px, 100 epochs,
#      then a test pass) with the input caches on, off, and with torch.compile
#      -> results/benchmarks/<device>_vtab_shaped.csv and .md.
# Read against: ViT-B/16 LoRA on one VTAB-1k task in < 90 s (the 19-task suite < 30 min); training step /
# forward <= 2.2 for the PEFT methods.
#
# Usage: bash scripts/gpu_check.sh [--smoke] [--wheels DIR]
#   --smoke       the same steps on the tiny vit_test backbone, 2 epochs, CPU allowed (checks the script)
#   --wheels DIR  install hydra-core / omegaconf / antlr4 wheels from DIR first where they are missing
#                 (a GPU machine without network); peftbench itself runs from this checkout (no install)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SMOKE=0
WHEELS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --wheels) WHEELS="$2"; shift ;;
    *) echo "gpu_check.sh: unknown argument '$1'; valid: --smoke, --wheels DIR" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
  if [ -z "$WHEELS" ]; then
    echo "gpu_check.sh: hydra-core and omegaconf are missing; pip install them, or pass --wheels DIR with their wheels" >&2
    exit 2
  fi
  SITE="$(mktemp -d)"
  "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi

OUT="${GPU_CHECK_OUT:-results/benchmarks}"
RUNS="$(mktemp -d)"
if [ "$SMOKE" = 1 ]; then
  BACKBONE=(backbone=vit_test)
  BENCH=(bench.batch_size=8 'bench.infer_batch_sizes=[1,8]' bench.warmup=1 bench.iters=1 bench.repeats=1)
  EPOCHS=2
  WARMUP=1
  OUT="$RUNS/benchmarks"
  COMPILE_BACKEND=(trainer.compile_backend=eager)
else
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device here; run it on a GPU machine (or --smoke to check the script)" >&2
    exit 2
  fi
  BACKBONE=(backbone=vit_b16_in21k)
  BENCH=(bench.batch_size=64 'bench.infer_batch_sizes=[1,256]' bench.warmup=3 bench.iters=5 bench.repeats=3)
  EPOCHS=100
  WARMUP=10
  COMPILE_BACKEND=()
fi

echo "[gpu_check] 1/2 peftbench-bench -> $OUT"
"$PY" -m peftbench.cli.bench all_methods=true 'methods=[lora,adapter,vpt_deep,ssf,full,lst]' "${BACKBONE[@]}" \
  "${BENCH[@]}" bench.probe_epochs=0 "out_dir=$OUT"

echo "[gpu_check] 2/2 VTAB-1k-shaped LoRA runs (${EPOCHS} epochs) with caches on / off / compiled"
COMMON=("${BACKBONE[@]}" backbone.weights=none method=lora dataset=embedded/dsprites_loc
        "trainer.epochs=$EPOCHS" "trainer.warmup_epochs=$WARMUP" trainer.progress=false "paths.results_dir=$RUNS" "data.root=$RUNS/data"
        "hydra.run.dir=$RUNS/hydra")
"$PY" -m peftbench.cli.train "${COMMON[@]}" ++method.label=lora_cached
"$PY" -m peftbench.cli.train "${COMMON[@]}" trainer.input_cache=false trainer.prefix_cache=false ++method.label=lora_uncached
"$PY" -m peftbench.cli.train "${COMMON[@]}" trainer.compile=true "${COMPILE_BACKEND[@]}" ++method.label=lora_compiled

"$PY" - "$RUNS" "$OUT" "$*" <<'EOF'
"""Collect the three runs into <out>/<device>_vtab_shaped.{csv,md}."""
import json
import platform
import sys
from pathlib import Path

import pandas as pd

runs, out, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
rows = []
for path in sorted(runs.glob("runs/**/result.json")):
    res = json.loads(path.read_text())
    m = res["metrics"]
    rows.append({"run": res["method"], "device": res["device"], "precision": res.get("precision"),
                 "status": res["status"], "accuracy": m.get("accuracy"), "wall_seconds": m.get("wall_seconds"),
                 "train_seconds": m.get("train_seconds"), "train_img_s": m.get("train_img_s"),
                 "infer_img_s": m.get("infer_img_s"), "peak_train_mem_mb": m.get("peak_train_mem_mb"),
                 "saved_activation_mb": m.get("saved_activation_mb"), "latency_b1_ms": m.get("latency_b1_ms"),
                 "data_wait_fraction": m.get("data_wait_fraction")})
frame = pd.DataFrame(rows)
device = frame["device"].iloc[0]
import torch  # noqa: E402

from peftbench.engine.measure import device_slug  # noqa: E402  # the bench table's name

slug = device_slug(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
out.mkdir(parents=True, exist_ok=True)
frame.to_csv(out / f"{slug}_vtab_shaped.csv", index=False)
lines = [f"# VTAB-1k-shaped LoRA runs on {device}", "",
         f"- command: `{' '.join(['bash scripts/gpu_check.sh', args]).strip()}`",
         f"- machine: {platform.machine()}, {platform.system()} {platform.release()}",
         "- 1000 training images (train800val200 of embedded/dsprites_loc, resized to the backbone's size), "
         "then the 500-image test pass; random-init backbone (costs do not depend on the weights)", "",
         "| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
for r in frame.itertuples(index=False):
    lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
(out / f"{slug}_vtab_shaped.md").write_text("\n".join(lines) + "\n")
print(frame.to_string(index=False))
print(f"[gpu_check] tables: {out}/{slug}.md, {out}/{slug}_vtab_shaped.md")
EOF
