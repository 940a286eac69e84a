#!/usr/bin/env bash
# README command 2: install, then run the test suite (CPU only; GPU tests skip themselves).
# Extra arguments are passed to pytest (e.g. -k contract, -x; -n 0 runs in one process).
# Two pytest workers (pytest-xdist), one torch thread each: the end-to-end tests are single-threaded
# subprocesses, so two of them at a time keep both cores of a 2-core machine busy. Tests marked with an
# xdist group share one worker (--dist loadgroup): the SLURM launcher tests start one single-node cluster
# (tests/slurm_cluster.py; as root it installs Debian's slurm-wlm and munge when missing) and stop it after.
# tests/conftest.py hands out the longest tests first (the SLURM group, then those marked slow).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
ruff check peftbench tests scripts
python -m pytest -q -n 2 --dist loadgroup "$@"
