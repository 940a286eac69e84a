#!/usr/bin/env bash
# README command 1: install, then run the main job on the embedded offline default:
# full fine-tuning and a linear probe of the micro ViT (fractal-pretrained, shipped in the package) on
# the built-in task, then the leaderboard. The whole embedded mini-benchmark: scripts/embedded_benchmark.py.
# Extra arguments are passed to peftbench-train (e.g. trainer.epochs=5).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
peftbench-train -m method=full,linear trainer=smoke "$@"
peftbench-leaderboard
echo "[demo] run JSONs under results/runs/, tables and the page (index.html) under results/leaderboard/"
