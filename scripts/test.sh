#!/usr/bin/env bash
# README command 2: install, then run the test suite (CPU only; GPU tests skip themselves).
# Extra arguments are passed to pytest (e.g. -k contract, -x).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
ruff check peftbench tests scripts
python -m pytest -q "$@"
