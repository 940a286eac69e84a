"""``peftbench-leaderboard``: build the leaderboard CSVs, figures and summary page from all run JSONs.

Example:
    peftbench-leaderboard                        # reads results/runs, writes results/leaderboard
    peftbench-leaderboard --results-dir /scratch/results --out tables/
    peftbench-leaderboard --no-plots             # tables and index.html only (no matplotlib needed)
    peftbench-leaderboard --page-only --out results/embedded/all_methods --page-out /tmp/page   # page from tables
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peftbench.errors import DataError, PeftbenchError, user_error_exit

PROG = "peftbench-leaderboard"


def _error(message: str) -> int:
    return int(user_error_exit(DataError(message), PROG).code or 2)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="peftbench-leaderboard",
        description="Collect every <results-dir>/runs/**/result.json into leaderboard CSVs "
        "(runs.csv, problems.csv, vtab1k.csv, fgvc.csv, embedded.csv: per task the mean, <task>_std, "
        "<task>_ci95 (95% t-interval half-width over seeds, empty below two seeds) and <task>_n, and a "
        "mean_rank over tasks per backbone; costs.csv per device), test every two methods of one backbone and suite "
        "(significance.csv: Wilcoxon signed-rank over tasks, t-test over seeds per task), compare them with "
        "the published tables in <results-dir>/reference (vtab1k_vs_reference.csv, fgvc_vs_reference.csv), "
        "mark Pareto fronts (pareto.csv), draw plots/*.png with summary.md, and write index.html: one "
        "self-contained page (no network) with the tables sortable and filterable, the heat map of ours minus the "
        "paper and the accuracy-vs-cost plots with each point's settings on hover.",
    )
    parser.add_argument("--results-dir", default="results", help="folder holding runs/ (default: results)")
    parser.add_argument("--out", default=None, help="output folder (default: <results-dir>/leaderboard)")
    parser.add_argument("--reference-dir", default=None,
                        help="published tables (default: <results-dir>/reference; none there = no comparison)")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures and summary.md")
    parser.add_argument("--no-page", action="store_true", help="skip index.html")
    parser.add_argument("--page-only", action="store_true",
                        help="read no run JSON: write index.html from the tables already in --out (e.g. committed "
                             "ones; the run links then point where runs.csv says the runs were)")
    parser.add_argument("--page-out", default=None, help="with --page-only: where index.html goes (default: --out)")
    args = parser.parse_args(argv)
    from peftbench.results.leaderboard import build

    if args.page_only:
        return _page_only(args)

    runs = Path(args.results_dir) / "runs"
    if not runs.is_dir():
        return _error(f"no run folder {runs}; train something first (peftbench-train ...) or pass --results-dir DIR")
    if args.reference_dir is not None and not Path(args.reference_dir).is_dir():
        return _error(f"no reference folder {args.reference_dir}; pass a folder of published-table CSVs "
                      "or drop --reference-dir to use <results-dir>/reference")
    try:
        board = build(args.results_dir, args.out, args.reference_dir, plots=not args.no_plots, page=not args.no_page)
    except PeftbenchError as exc:
        return _error(str(exc))
    for problem in board.unreadable:
        print(f"skipped {problem['result_path']}: {problem['message']}", file=sys.stderr)
    if board.in_progress:
        print(f"{board.in_progress} run(s) in progress (listed in problems.csv as in_progress)")
    for note in board.too_few_seeds:
        print(note)
    for name, backbones in board.backbones.items():
        if len(backbones) > 1:
            print(f"{name}: {len(backbones)} backbones ({', '.join(backbones)}), one row each, never averaged together")
    for name, path in board.written.items():
        if not name.startswith("plot:"):
            print(f"{name:>20}: {path}")
    figures = [p for n, p in board.written.items() if n.startswith("plot:")]
    if figures:
        print(f"{'plots':>20}: {len(figures)} figure(s) in {figures[0].parent}")
    if board.valid_runs == 0:
        return _error(f"no finished, readable run JSON under {runs} ({len(board.unreadable)} unreadable, "
                      f"{board.in_progress} in progress); the tables are empty")
    return 0


def _page_only(args: argparse.Namespace) -> int:
    """``--page-only``: index.html from the leaderboard CSVs in ``--out``."""
    from peftbench.results.page import TABLES, write_page
    from peftbench.results.reference import load_reference

    if args.out is None or not Path(args.out).is_dir():
        return _error(f"--page-only reads the tables in --out; {args.out or '(no --out given)'} is not a folder")
    if not any((Path(args.out) / f"{name}.csv").is_file() for name in TABLES):
        return _error(f"{args.out} holds no suite table ({', '.join(f'{n}.csv' for n in TABLES)}); "
                      "build the tables first (peftbench-leaderboard --results-dir DIR --out DIR)")
    try:
        reference = load_reference(args.reference_dir if args.reference_dir is not None
                                   else Path(args.results_dir) / "reference")
        page = write_page(args.out, reference, page_out=args.page_out)
    except PeftbenchError as exc:
        return _error(str(exc))
    print(f"{'page':>20}: {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def console() -> None:
    """Console-script wrapper that turns the return value into the exit code."""
    sys.exit(main())
