"""Regenerate the method x backbone support matrix (results/support_matrix.csv and the README table), or check it.

    python scripts/support_matrix.py           # write both from the code (a few minutes on a CPU)
    python scripts/support_matrix.py --check   # exit 1, naming the cells, when the committed files disagree
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peftbench.apps.support_matrix import (
    backbone_rows,
    build_matrix,
    matrix_backbones,
    read_csv,
    render_markdown,
    to_csv,
    with_table,
)
from peftbench.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "results" / "support_matrix.csv"
README = ROOT / "README.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    rows = build_matrix()
    text = to_csv(rows)
    readme = with_table(README.read_text(), render_markdown(rows, backbone_rows(matrix_backbones())))
    if args.check:
        old = {(r["method"], r["backbone"]): r for r in read_csv(CSV)} if CSV.exists() else {}
        stale = [f"{r['method']} x {r['backbone']}" for r in rows if old.get((r["method"], r["backbone"])) != {
            k: str(v) for k, v in r.items()}]
        if stale or README.read_text() != readme or len(old) != len(rows):
            print(f"support matrix out of date ({len(stale)} cells, e.g. {stale[:5]}); run "
                  "python scripts/support_matrix.py", file=sys.stderr)
            return 1
        print(f"support matrix up to date ({len(rows)} cells)")
        return 0
    CSV.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(CSV, text)
    write_text_atomic(README, readme)
    print(f"wrote {CSV} ({len(rows)} cells) and the table in {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
