#!/usr/bin/env bash
# The performance tables: every registered method on ViT-B/16 (random init: weights do not change the
# cost) -> results/benchmarks/<device>.csv and <device>.md (machine, versions, this exact command).
# Run it on a quiet machine; on a GPU bf16 autocast is the default. Extra arguments go to peftbench-bench,
# e.g. backbone=vit_test bench.batch_size=8 for a quick look, or bench.num_threads=1 on a shared CPU.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
peftbench-bench all_methods=true backbone=vit_b16_in21k bench.batch_size=64 'bench.infer_batch_sizes=[1,256]' \
  bench.warmup=3 bench.iters=10 bench.repeats=5 out_dir=results/benchmarks "$@"
