"""``peftbench-prepare``: build and check the VTAB-1k and FGVC data folders.

Examples:
    peftbench-prepare vtab --root data --tasks cifar dtd --download-dir ~/downloads
    peftbench-prepare vtab --root data --source tfds            # all 19 tasks, exact VTAB images
    peftbench-prepare fgvc --root data --dataset cub --source CUB_200_2011.tgz --splits vpt/CUB_200_2011
    peftbench-prepare verify --root data --suite vtab
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peftbench.prepare.fgvc import SOURCE_FILES
from peftbench.prepare.protocol import FGVC_DATASETS, VTAB_TASKS
from peftbench.prepare.vtab import SOURCES, TORCHVISION

PROG = "peftbench-prepare"


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=fmt,
        description="Build the data folders peftbench-train reads, and check them against the protocol.\n"
        "  vtab    <root>/vtab-1k/<task>/{images/,train800,val200,train800val200,test}.txt\n"
        "  fgvc    <root>/<folder>/{train,val,test}.json (VPT's layout)\n"
        "  verify  split sizes, labels, disjointness and image decoding, per task",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{vtab,fgvc,verify}")

    vtab = sub.add_parser(
        "vtab",
        formatter_class=fmt,
        help="build VTAB-1k task folders",
        description="Build <root>/vtab-1k/<task>/ with the VTAB-1k split recipe (train800 = train[:800], "
        "val200 and test as in the VTAB task definitions), images as PNG, and source.json recording the "
        "source, its version and the recipe. Completed tasks are skipped; an interrupted task resumes.\n\n"
        f"torchvision covers: {', '.join(TORCHVISION)}\n"
        "the others need tensorflow-datasets (pip install 'peftbench[tfds]').",
    )
    vtab.add_argument("--root", required=True, type=Path, help="data root (data.root of the runs)")
    vtab.add_argument(
        "--tasks", nargs="+", metavar="TASK",
        help=f"tasks (folder names or aliases; default: all 19): {', '.join(VTAB_TASKS)}",
    )
    vtab.add_argument(
        "--source", choices=SOURCES, default="auto",
        help="auto: torchvision where its splits match VTAB's, else TFDS (default); tfds: the exact VTAB "
        "images for every task; torchvision: only the tasks it covers",
    )
    vtab.add_argument(
        "--download-dir", type=Path,
        help="folder holding the originals in torchvision's layout, e.g. cifar-100-python/, dtd/dtd/, "
        "flowers-102/ (default: <root>/downloads)",
    )
    vtab.add_argument("--tfds-dir", type=Path, help="tensorflow-datasets data folder (default: TFDS's default)")
    vtab.add_argument("--seed", type=int, default=0, help="seed of the order of torchvision splits (default: 0)")

    fgvc = sub.add_parser(
        "fgvc",
        formatter_class=fmt,
        help="build one FGVC dataset folder",
        description="Write <root>/<folder>/{train,val,test}.json from the official downloads, with VPT's "
        "train/val split when --splits is given, else a seeded val draw of VPT's size from the official "
        "training set (Oxford Flowers: its official val). Images are linked, not copied.\n\n"
        "datasets (folder written below --root): what --source must provide\n"
        + "\n".join(f"  {d.name} ({d.folder}): {SOURCE_FILES[d.name]}" for d in FGVC_DATASETS.values()),
    )
    fgvc.add_argument("--root", required=True, type=Path, help="data root (data.root of the runs)")
    fgvc.add_argument("--dataset", required=True, metavar="NAME", help=f"one of: {', '.join(FGVC_DATASETS)}")
    fgvc.add_argument(
        "--source", action="append", type=Path, default=[], metavar="PATH",
        help="an official archive (.tgz/.tar/.zip), a single file (.mat) or an extracted folder; repeat "
        "for datasets shipped in several files (Stanford Dogs: images.tar and lists.tar)",
    )
    fgvc.add_argument("--splits", type=Path, metavar="DIR", help="folder with VPT's train.json / val.json")
    fgvc.add_argument("--seed", type=int, default=0, help="seed of the val draw without --splits (default: 0)")

    ver = sub.add_parser(
        "verify",
        formatter_class=fmt,
        help="check prepared folders against the protocol",
        description="Per task: split sizes (VTAB 800/200/1000 and the protocol's test size; FGVC VPT's "
        "sizes), class ids and label ranges, train800/val200 disjoint with union train800val200, no test "
        "image among the training images, every image present and decodable. Prints OK or the problems; "
        "exit code 1 if any task fails.",
    )
    ver.add_argument("--root", required=True, type=Path, help="data root")
    ver.add_argument("--suite", choices=("vtab", "fgvc"), help="check one suite only (default: both)")
    ver.add_argument("--tasks", nargs="+", metavar="TASK", help="tasks to check (default: every prepared one)")
    ver.add_argument(
        "--partial", action="store_true",
        help="the tree holds part of the evaluation data: VTAB test.txt and the FGVC splits only need to be "
        "non-empty, and the per-split class coverage is not checked",
    )
    ver.add_argument("--skip-images", action="store_true", help="do not open the images (list checks only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code (2 for user errors, 1 for failed checks)."""
    from peftbench.errors import PeftbenchError, user_error_exit

    args = _parser().parse_args(argv)
    try:
        if args.command == "vtab":
            from peftbench.prepare.vtab import prepare_vtab

            prepare_vtab(args.root, args.tasks, args.source, args.download_dir, args.tfds_dir, args.seed)
            return 0
        if args.command == "fgvc":
            from peftbench.prepare.fgvc import prepare_fgvc

            prepare_fgvc(args.root, args.dataset, args.source, args.splits, args.seed)
            return 0
        from peftbench.prepare.verify import verify

        reports = verify(args.root, args.suite, args.tasks, args.partial, not args.skip_images)
    except PeftbenchError as exc:
        return int(user_error_exit(exc, PROG).code or 2)
    for r in reports:
        counts = ", ".join(f"{k} {v}" for k, v in r.counts.items())
        print(f"{r.suite}/{r.task}: {'OK' if r.ok else 'FAILED'} ({counts or 'no splits read'})")
        for problem in r.problems:
            print(f"  - {problem}")
    failed = [r.task for r in reports if not r.ok]
    print(f"{len(reports) - len(failed)} of {len(reports)} tasks OK" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def console() -> None:
    """Console-script wrapper that turns the return value into the exit code."""
    sys.exit(main())


if __name__ == "__main__":
    console()
