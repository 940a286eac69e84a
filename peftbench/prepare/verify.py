"""Check a prepared tree against the protocol tables and say, per task, what is wrong.

VTAB-1k task folder:
    the four list files exist and parse ("relative/path label" per line); train800 / val200 /
    train800val200 hold 800 / 200 / 1000 entries; test holds the protocol's test size (with
    ``partial_test``: at least one entry, and the class-coverage check is skipped, for trees built on
    a subset of the evaluation split); no path appears twice in a list; labels lie in [0, C);
    train800 and val200 are disjoint and their union is exactly train800val200; no test image is a
    training image; all lists together hold all C classes; every listed image exists and decodes. In the
    widely shared layout where each split has its own image folder (``images/train800val200/...``), images
    are compared by content, not by path.
FGVC dataset folder:
    train/val/test.json exist and map paths to integer class ids; the split sizes are VPT's (with
    ``partial``: non-empty); the files hold exactly C distinct ids (as the reader requires) and
    train and test each hold all of them (skipped with ``partial``); the splits are disjoint; every
    image exists below the image folder and decodes.

Reading a file reports what is wrong within it: missing or unparsable; in a VTAB list, labels outside
[0, C) and paths listed twice; in an FGVC file, class ids that are not integers. The other checks are the
rows of ``VTAB_CHECKS`` and ``FGVC_CHECKS``: ``(name, fn)`` pairs whose fn takes a context (the parsed
files, the protocol entry, the flags) and returns its problems. A report holds the reading problems file
by file, then the rows' problems in table order.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from PIL import Image

from peftbench.errors import DataError, UnknownNameError
from peftbench.prepare.protocol import (
    FGVC_DATASETS,
    FGVC_SPLITS,
    VTAB_LISTS,
    VTAB_TASKS,
    VTAB_TRAIN_SIZES,
    FgvcDataset,
    VtabTask,
)

SUITES = ("vtab", "fgvc")

Entries = list[tuple[str, int]]  # one VTAB list file: (relative path, label) per line, in file order
_Ctx = TypeVar("_Ctx")


@dataclasses.dataclass
class Report:
    """The outcome for one task: an empty ``problems`` list means OK."""

    suite: str
    task: str
    path: Path
    problems: list[str] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no check found a problem."""
        return not self.problems


def _examples(items: Iterable[str], limit: int = 3) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def _check_images(base: Path, paths: Iterable[str]) -> list[str]:
    missing, broken = [], []
    # an image listed in several files is opened once
    for rel in dict.fromkeys(paths):
        path = base / rel
        if not path.is_file():
            missing.append(rel)
            continue
        try:
            with Image.open(path) as img:
                img.load()
        except (OSError, SyntaxError, ValueError):
            broken.append(rel)
    problems = []
    if missing:
        problems.append(f"{len(missing)} listed images are missing: {_examples(missing)}")
    if broken:
        problems.append(f"{len(broken)} images cannot be decoded: {_examples(broken)}")
    return problems


def _run(rows: Iterable[tuple[str, Callable[[_Ctx], list[str]]]], ctx: _Ctx) -> list[str]:
    return [problem for _, fn in rows for problem in fn(ctx)]


# ---- VTAB-1k -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VtabContext:
    """What the VTAB rows look at.

    Attributes:
        task_dir: the task folder; the listed paths are relative to it.
        task: the task's protocol entry.
        lists: each of ``VTAB_LISTS`` -> its parsed entries, ``None`` where the file is missing.
        partial_test: test.txt may hold part of the test split.
        check_images: open and decode every listed image.
        identity: listed path -> what makes two entries the same image. The path itself in a tree whose lists
            share one image folder; in the widely shared layout where each split has its own folder
            (``images/train800val200/...``), the file's content (or, with ``check_images`` off, its name
            within the split folder), so the disjointness and union checks compare images, not paths.
    """

    task_dir: Path
    task: VtabTask
    lists: dict[str, Entries | None]
    partial_test: bool = False
    check_images: bool = True
    identity: dict[str, str] = dataclasses.field(default_factory=dict)

    def key(self, path: str) -> str:
        return self.identity.get(path, path)


def _read_list(path: Path, num_classes: int) -> tuple[Entries | None, list[str]]:
    if not path.is_file():
        return None, [f"{path.name} is missing"]
    entries, bad, out_of_range = [], [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            # reported here only: an unparsable line takes part in no other check
            bad.append(f"line {lineno} {line!r}")
            continue
        label = int(parts[1])
        if not 0 <= label < num_classes:
            out_of_range.append(f"line {lineno} label {label}")
        entries.append((parts[0].strip(), label))
    problems = []
    if bad:
        problems.append(f"{path.name}: {len(bad)} lines are not '<path> <label>': {_examples(bad)}")
    if out_of_range:
        problems.append(
            f"{path.name}: {len(out_of_range)} labels outside [0, {num_classes}): {_examples(out_of_range)}"
        )
    duplicates = len(entries) - len({p for p, _ in entries})
    if duplicates:
        problems.append(f"{path.name}: {duplicates} paths are listed more than once")
    return entries, problems


def _vtab_train_sizes(ctx: VtabContext) -> list[str]:
    problems = []
    for name, expected in VTAB_TRAIN_SIZES.items():
        entries = ctx.lists[name]
        if entries is not None and len(entries) != expected:
            problems.append(f"{name}.txt has {len(entries)} entries, the protocol has {expected}")
    return problems


def _vtab_test_size(ctx: VtabContext) -> list[str]:
    test = ctx.lists["test"]
    if test is None:
        return []
    if ctx.partial_test:
        return [] if test else ["test.txt is empty"]
    if len(test) != ctx.task.test_size:
        return [
            f"test.txt has {len(test)} entries, the protocol has {ctx.task.test_size} "
            "(a tree built on part of the test split passes with --partial-test)"
        ]
    return []


def _vtab_train_val_disjoint(ctx: VtabContext) -> list[str]:
    train, val = ctx.lists["train800"], ctx.lists["val200"]
    if train is None or val is None:
        return []
    val_keys = {ctx.key(p) for p, _ in val}
    overlap = sorted(p for p, _ in train if ctx.key(p) in val_keys)
    return [f"train800 and val200 share {len(overlap)} images: {_examples(overlap)}"] if overlap else []


def _vtab_union(ctx: VtabContext) -> list[str]:
    train, val, both = ctx.lists["train800"], ctx.lists["val200"], ctx.lists["train800val200"]
    if train is None or val is None or both is None:
        return []
    # compared as (image, label) pairs, so a relabelled image shows up as one missing and one extra entry
    union = {(ctx.key(p), y): p for p, y in [*train, *val]}
    listed = {(ctx.key(p), y): p for p, y in both}
    if union.keys() == listed.keys():
        return []
    lacking = sorted(f"{union[k]} {k[1]}" for k in union.keys() - listed.keys())
    extra = sorted(f"{listed[k]} {k[1]}" for k in listed.keys() - union.keys())
    parts = []
    if lacking:
        parts.append(f"{len(lacking)} entries missing ({_examples(lacking)})")
    if extra:
        parts.append(f"{len(extra)} extra entries ({_examples(extra)})")
    return ["train800val200 is not the union of train800 and val200: " + "; ".join(parts)]


def _vtab_test_not_in_training(ctx: VtabContext) -> list[str]:
    test = ctx.lists["test"]
    if test is None:
        return []
    # the training lists that were read; a missing one is already reported by its reader
    training = {ctx.key(p) for name in VTAB_TRAIN_SIZES for p, _ in ctx.lists[name] or ()}
    leaked = sorted(p for p, _ in test if ctx.key(p) in training)
    return [f"{len(leaked)} test images are also training images: {_examples(leaked)}"] if leaked else []


def _vtab_class_coverage(ctx: VtabContext) -> list[str]:
    # a partial test split may lack classes the full one has, and with a file missing the classes it
    # would hold would look absent
    if ctx.partial_test or any(entries is None for entries in ctx.lists.values()):
        return []
    labels = {y for entries in ctx.lists.values() for _, y in entries or ()}
    absent = sorted(set(range(ctx.task.num_classes)) - labels)
    if not absent:
        return []
    return [f"{len(absent)} of the {ctx.task.num_classes} classes never occur: {_examples(map(str, absent))}"]


def _vtab_images(ctx: VtabContext) -> list[str]:
    if not ctx.check_images:
        return []
    return _check_images(ctx.task_dir, [p for entries in ctx.lists.values() if entries for p, _ in entries])


VtabCheck = Callable[[VtabContext], list[str]]

# Row order is the order of the problems in a report; images come last as they did before the table.
VTAB_CHECKS: tuple[tuple[str, VtabCheck], ...] = (
    ("train_sizes", _vtab_train_sizes),
    ("test_size", _vtab_test_size),
    ("train_val_disjoint", _vtab_train_val_disjoint),
    ("train800val200_union", _vtab_union),
    ("test_not_in_training", _vtab_test_not_in_training),
    ("class_coverage", _vtab_class_coverage),
    ("images", _vtab_images),
)


def verify_vtab_task(
    task_dir: Path, task: VtabTask, partial_test: bool = False, check_images: bool = True
) -> Report:
    """Check one ``<root>/vtab-1k/<task>`` folder (see the module docstring for the checks).

    Args:
        task_dir: the task folder.
        task: the task's protocol entry.
        partial_test: test.txt may hold any non-empty part of the test split; skips class coverage.
        check_images: open and decode every listed image.

    Returns:
        The task's report: the reading problems of each list file, then those of ``VTAB_CHECKS``.
    """
    report = Report("vtab", task.name, task_dir)
    if not task_dir.is_dir():
        report.problems.append(f"folder {task_dir} does not exist")
        return report
    lists: dict[str, Entries | None] = {}
    for name in VTAB_LISTS:
        lists[name], problems = _read_list(task_dir / f"{name}.txt", task.num_classes)
        report.problems.extend(problems)
    report.counts = {name: len(e) for name, e in lists.items() if e is not None}
    identity = _image_identity(task_dir, lists, check_images)
    ctx = VtabContext(task_dir, task, lists, partial_test, check_images, identity)
    report.problems.extend(_run(VTAB_CHECKS, ctx))
    return report


def _split_folders(lists: dict[str, Entries | None]) -> bool:
    """True for the shared layout where each split lists its own copies (train800 and train800val200 share no
    path although both are read)."""
    train, both = lists.get("train800"), lists.get("train800val200")
    return bool(train) and bool(both) and not ({p for p, _ in train} & {p for p, _ in both})


def _image_identity(task_dir: Path, lists: dict[str, Entries | None], by_content: bool) -> dict[str, str]:
    """Listed path -> image identity for trees with one folder per split (empty: paths identify images)."""
    if not _split_folders(lists):
        return {}
    import hashlib

    paths = {p for entries in lists.values() if entries for p, _ in entries}
    if by_content:
        identity = {}
        for p in paths:
            try:
                identity[p] = hashlib.sha256((task_dir / p).read_bytes()).hexdigest()
            except OSError:
                identity[p] = p  # the image check reports the missing file
        return identity
    # without reading images: the file's path below its split's folder (images/<split>/<name> -> <name>)
    return {p: "/".join(Path(p).parts[2:]) or p for p in paths}


# ---- FGVC ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FgvcContext:
    """What the FGVC rows look at.

    Attributes:
        folder: the dataset folder that holds the json files.
        ds: the dataset's protocol entry.
        splits: each of ``FGVC_SPLITS`` -> its path -> class id map, ``None`` where it could not be read.
        partial: any non-empty split sizes pass; skips per-split class coverage.
        check_images: open and decode every listed image.
    """

    folder: Path
    ds: FgvcDataset
    splits: dict[str, dict[str, int] | None]
    partial: bool = False
    check_images: bool = True

    @property
    def present(self) -> dict[str, dict[str, int]]:
        """The splits that were read, in ``splits`` order."""
        return {s: m for s, m in self.splits.items() if m is not None}

    @property
    def class_ids(self) -> set[int] | None:
        """The distinct class ids of all splits; ``None`` unless every split was read."""
        present = self.present
        if len(present) != len(FGVC_SPLITS):
            return None
        return {v for m in present.values() for v in m.values()}


def _read_json(path: Path) -> tuple[dict[str, int] | None, list[str]]:
    if not path.is_file():
        return None, [f"{path.name} is missing"]
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return None, [f"{path.name}: not valid JSON (line {exc.lineno}: {exc.msg})"]
    if not isinstance(obj, dict):
        return None, [f"{path.name}: expected a JSON object mapping image path -> class id"]
    # bool is an int subclass, but true/false in a split file is a mistake, not class 1/0
    bad = [k for k, v in obj.items() if isinstance(v, bool) or not isinstance(v, int)]
    problems = [f"{path.name}: {len(bad)} class ids are not integers: {_examples(bad)}"] if bad else []
    # the entries with integer ids still take part in the other checks
    dropped = set(bad)
    return {k: v for k, v in obj.items() if k not in dropped}, problems


def _fgvc_split_sizes(ctx: FgvcContext) -> list[str]:
    problems = []
    for s, m in ctx.present.items():
        if ctx.partial and not m:
            problems.append(f"{s}.json is empty")
        elif not ctx.partial and len(m) != ctx.ds.sizes[s]:
            problems.append(f"{s}.json has {len(m)} entries, VPT's split has {ctx.ds.sizes[s]}")
    return problems


def _fgvc_splits_disjoint(ctx: FgvcContext) -> list[str]:
    present = ctx.present
    problems = []
    for a, b in itertools.combinations(present, 2):
        shared = sorted(set(present[a]) & set(present[b]))
        if shared:
            problems.append(f"{a} and {b} share {len(shared)} images: {_examples(shared)}")
    return problems


def _fgvc_class_count(ctx: FgvcContext) -> list[str]:
    ids = ctx.class_ids
    if ids is None or len(ids) == ctx.ds.num_classes:
        return []
    return [f"the json files hold {len(ids)} distinct class ids, the dataset has {ctx.ds.num_classes}"]


def _fgvc_class_coverage(ctx: FgvcContext) -> list[str]:
    ids = ctx.class_ids
    # with the wrong number of ids the class_count row has already said what is wrong
    if ctx.partial or ids is None or len(ids) != ctx.ds.num_classes:
        return []
    problems = []
    for s in ("train", "test"):
        absent = sorted(ids - set(ctx.present[s].values()))
        if absent:
            problems.append(f"{s}.json lacks {len(absent)} classes: ids {_examples(map(str, absent))}")
    return problems


def _fgvc_images(ctx: FgvcContext) -> list[str]:
    if not ctx.check_images:
        return []
    base = ctx.folder / ctx.ds.image_dir
    if not base.is_dir():
        return [f"image folder {base} does not exist"]
    return _check_images(base, [p for m in ctx.present.values() for p in m])


FgvcCheck = Callable[[FgvcContext], list[str]]

# Row order is the order of the problems in a report, as for VTAB_CHECKS.
FGVC_CHECKS: tuple[tuple[str, FgvcCheck], ...] = (
    ("split_sizes", _fgvc_split_sizes),
    ("splits_disjoint", _fgvc_splits_disjoint),
    ("class_count", _fgvc_class_count),
    ("class_coverage", _fgvc_class_coverage),
    ("images", _fgvc_images),
)


def verify_fgvc_dataset(
    folder: Path, ds: FgvcDataset, partial: bool = False, check_images: bool = True
) -> Report:
    """Check one FGVC dataset folder in VPT's layout (see the module docstring for the checks).

    Args:
        folder: the dataset folder that holds train/val/test.json.
        ds: the dataset's protocol entry.
        partial: any non-empty split sizes pass; skips per-split class coverage.
        check_images: open and decode every listed image.

    Returns:
        The dataset's report: the reading problems of each json file, then those of ``FGVC_CHECKS``.
    """
    report = Report("fgvc", ds.name, folder)
    if not folder.is_dir():
        report.problems.append(f"folder {folder} does not exist")
        return report
    splits: dict[str, dict[str, int] | None] = {}
    for s in FGVC_SPLITS:
        splits[s], problems = _read_json(folder / f"{s}.json")
        report.problems.extend(problems)
    report.counts = {s: len(m) for s, m in splits.items() if m is not None}
    report.problems.extend(_run(FGVC_CHECKS, FgvcContext(folder, ds, splits, partial, check_images)))
    return report


def verify(
    root: Path,
    suite: str | None = None,
    tasks: list[str] | None = None,
    partial: bool = False,
    check_images: bool = True,
) -> list[Report]:
    """Check the prepared tasks below ``root``.

    Args:
        root: the data root.
        suite: ``vtab``, ``fgvc`` or ``None`` (both).
        tasks: names (aliases allowed) to check; empty = every task of the suite(s) whose folder exists.
        partial: VTAB: test.txt may hold part of the test split; FGVC: any non-empty split sizes.
        check_images: open and decode every listed image.

    Returns:
        One report per checked task.
    """
    from peftbench.data.config import canonical_option

    root = Path(root).expanduser()
    if suite is not None and suite not in SUITES:
        raise UnknownNameError("suite", suite, SUITES)
    if not root.is_dir():
        raise DataError(
            f"--root {root} does not exist; pass the folder that holds vtab-1k/ and the FGVC folders"
        )
    suites = [suite] if suite else list(SUITES)
    tables: dict[str, dict] = {"vtab": VTAB_TASKS, "fgvc": FGVC_DATASETS}
    if tasks:
        chosen: list[tuple[str, str]] = []
        for name in tasks:
            hits = [(s, canonical_option(f"{s}/{name}").partition("/")[2]) for s in suites]
            hits = [(s, n) for s, n in hits if n in tables[s]]
            if not hits:
                raise UnknownNameError("task", name, [n for s in suites for n in tables[s]])
            chosen.extend(hits)
    else:
        chosen = [
            (s, n)
            for s in suites
            for n, d in tables[s].items()
            if (root / "vtab-1k" / n if s == "vtab" else root / d.folder).is_dir()
        ]
        if not chosen:
            raise DataError(
                f"no prepared task found below {root} (looked for vtab-1k/<task>/ and the FGVC folders "
                f"{', '.join(d.folder for d in FGVC_DATASETS.values())}); prepare them with "
                "peftbench-prepare vtab / fgvc, or pass the right --root"
            )
    return [
        verify_vtab_task(root / "vtab-1k" / n, VTAB_TASKS[n], partial, check_images)
        if s == "vtab"
        else verify_fgvc_dataset(root / FGVC_DATASETS[n].folder, FGVC_DATASETS[n], partial, check_images)
        for s, n in chosen
    ]
