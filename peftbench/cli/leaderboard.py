"""``peftbench-leaderboard``: build the leaderboard CSVs from all run JSONs.

Example:
    peftbench-leaderboard                        # reads results/runs, writes results/leaderboard
    peftbench-leaderboard --results-dir /scratch/results --out tables/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="peftbench-leaderboard",
        description="Collect every <results-dir>/runs/**/result.json into leaderboard CSVs "
        "(runs.csv, problems.csv, vtab1k.csv, fgvc.csv, embedded.csv).",
    )
    parser.add_argument("--results-dir", default="results", help="folder holding runs/ (default: results)")
    parser.add_argument("--out", default=None, help="output folder (default: <results-dir>/leaderboard)")
    args = parser.parse_args(argv)
    from peftbench.results.leaderboard import build_leaderboard

    runs = Path(args.results_dir) / "runs"
    if not runs.is_dir():
        print(
            f"peftbench-leaderboard: error: no run folder {runs}; train something first "
            "(peftbench-train ...) or pass --results-dir DIR",
            file=sys.stderr,
        )
        return 2
    written = build_leaderboard(args.results_dir, args.out)
    for name, path in written.items():
        print(f"{name:>9}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def console() -> None:
    """Console-script wrapper that turns the return value into the exit code."""
    sys.exit(main())
