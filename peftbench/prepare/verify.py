"""Check a prepared tree against the protocol tables and say, per task, what is wrong.

VTAB-1k task folder:
    the four list files exist and parse ("relative/path label" per line); train800 / val200 /
    train800val200 hold 800 / 200 / 1000 entries; test holds the protocol's test size (with
    ``partial_test``: at least one entry, and the class-coverage check is skipped, for trees built on
    a subset of the evaluation split); no path appears twice in a list; labels lie in [0, C);
    train800 and val200 are disjoint and their union is exactly train800val200; no test image is a
    training image; all lists together hold all C classes; every listed image exists and decodes.
FGVC dataset folder:
    train/val/test.json exist and map paths to integer class ids; the split sizes are VPT's (with
    ``partial``: non-empty); the files hold exactly C distinct ids (as the reader requires) and
    train and test each hold all of them (skipped with ``partial``); the splits are disjoint; every
    image exists below the image folder and decodes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

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
        return not self.problems


def _examples(items: Iterable[str], limit: int = 3) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def _check_images(base: Path, paths: Iterable[str], report: Report) -> None:
    missing, broken = [], []
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
    if missing:
        report.problems.append(f"{len(missing)} listed images are missing: {_examples(missing)}")
    if broken:
        report.problems.append(f"{len(broken)} images cannot be decoded: {_examples(broken)}")


def _read_list(path: Path, num_classes: int, report: Report) -> list[tuple[str, int]] | None:
    if not path.is_file():
        report.problems.append(f"{path.name} is missing")
        return None
    entries, bad, out_of_range = [], [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            bad.append(f"line {lineno} {line!r}")
            continue
        label = int(parts[1])
        if not 0 <= label < num_classes:
            out_of_range.append(f"line {lineno} label {label}")
        entries.append((parts[0].strip(), label))
    if bad:
        report.problems.append(f"{path.name}: {len(bad)} lines are not '<path> <label>': {_examples(bad)}")
    if out_of_range:
        report.problems.append(
            f"{path.name}: {len(out_of_range)} labels outside [0, {num_classes}): {_examples(out_of_range)}"
        )
    duplicates = len(entries) - len({p for p, _ in entries})
    if duplicates:
        report.problems.append(f"{path.name}: {duplicates} paths are listed more than once")
    return entries


def verify_vtab_task(
    task_dir: Path, task: VtabTask, partial_test: bool = False, check_images: bool = True
) -> Report:
    """Check one ``<root>/vtab-1k/<task>`` folder (see the module docstring for the checks)."""
    report = Report("vtab", task.name, task_dir)
    if not task_dir.is_dir():
        report.problems.append(f"folder {task_dir} does not exist")
        return report
    lists = {name: _read_list(task_dir / f"{name}.txt", task.num_classes, report) for name in VTAB_LISTS}
    report.counts = {name: len(e) for name, e in lists.items() if e is not None}
    for name, expected in VTAB_TRAIN_SIZES.items():
        if lists[name] is not None and len(lists[name]) != expected:
            report.problems.append(f"{name}.txt has {len(lists[name])} entries, the protocol has {expected}")
    test = lists["test"]
    if test is not None:
        if partial_test and not test:
            report.problems.append("test.txt is empty")
        elif not partial_test and len(test) != task.test_size:
            report.problems.append(
                f"test.txt has {len(test)} entries, the protocol has {task.test_size} "
                "(a tree built on part of the test split passes with --partial-test)"
            )
    train, val, both = lists["train800"], lists["val200"], lists["train800val200"]
    if train is not None and val is not None:
        overlap = {p for p, _ in train} & {p for p, _ in val}
        if overlap:
            report.problems.append(f"train800 and val200 share {len(overlap)} images: {_examples(sorted(overlap))}")
        if both is not None and set(train) | set(val) != set(both):
            extra = sorted(f"{p} {y}" for p, y in set(both) - set(train) - set(val))
            lacking = sorted(f"{p} {y}" for p, y in (set(train) | set(val)) - set(both))
            report.problems.append(
                "train800val200 is not the union of train800 and val200: "
                + "; ".join(
                    s
                    for s in (
                        f"{len(lacking)} entries missing ({_examples(lacking)})" if lacking else "",
                        f"{len(extra)} extra entries ({_examples(extra)})" if extra else "",
                    )
                    if s
                )
            )
    if test is not None:
        seen = {p for name in ("train800", "val200", "train800val200") for p, _ in lists[name] or ()}
        leaked = sorted(seen & {p for p, _ in test})
        if leaked:
            report.problems.append(f"{len(leaked)} test images are also training images: {_examples(leaked)}")
    if not partial_test and all(e is not None for e in lists.values()):
        labels = {y for e in lists.values() for _, y in e}
        absent = sorted(set(range(task.num_classes)) - labels)
        if absent:
            report.problems.append(
                f"{len(absent)} of the {task.num_classes} classes never occur: {_examples(map(str, absent))}"
            )
    if check_images:
        _check_images(task_dir, [p for e in lists.values() if e for p, _ in e], report)
    return report


def _read_json(path: Path, report: Report) -> dict[str, int] | None:
    if not path.is_file():
        report.problems.append(f"{path.name} is missing")
        return None
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        report.problems.append(f"{path.name}: not valid JSON (line {exc.lineno}: {exc.msg})")
        return None
    if not isinstance(obj, dict):
        report.problems.append(f"{path.name}: expected a JSON object mapping image path -> class id")
        return None
    bad = [k for k, v in obj.items() if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        report.problems.append(f"{path.name}: {len(bad)} class ids are not integers: {_examples(bad)}")
    return {k: v for k, v in obj.items() if k not in set(bad)}


def verify_fgvc_dataset(
    folder: Path, ds: FgvcDataset, partial: bool = False, check_images: bool = True
) -> Report:
    """Check one FGVC dataset folder in VPT's layout (see the module docstring for the checks)."""
    report = Report("fgvc", ds.name, folder)
    if not folder.is_dir():
        report.problems.append(f"folder {folder} does not exist")
        return report
    splits = {s: _read_json(folder / f"{s}.json", report) for s in FGVC_SPLITS}
    report.counts = {s: len(m) for s, m in splits.items() if m is not None}
    for s, m in splits.items():
        if m is None:
            continue
        if partial and not m:
            report.problems.append(f"{s}.json is empty")
        elif not partial and len(m) != ds.sizes[s]:
            report.problems.append(f"{s}.json has {len(m)} entries, VPT's split has {ds.sizes[s]}")
    present = {s: m for s, m in splits.items() if m is not None}
    names = list(present)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(set(present[a]) & set(present[b]))
            if shared:
                report.problems.append(f"{a} and {b} share {len(shared)} images: {_examples(shared)}")
    if len(present) == len(FGVC_SPLITS):
        ids = {v for m in present.values() for v in m.values()}
        if len(ids) != ds.num_classes:
            report.problems.append(f"the json files hold {len(ids)} distinct class ids, the dataset has {ds.num_classes}")
        elif not partial:
            for s in ("train", "test"):
                absent = sorted(ids - set(present[s].values()))
                if absent:
                    report.problems.append(f"{s}.json lacks {len(absent)} classes: ids {_examples(map(str, absent))}")
    if check_images:
        base = folder / ds.image_dir
        if not base.is_dir():
            report.problems.append(f"image folder {base} does not exist")
        else:
            _check_images(base, [p for m in present.values() for p in m], report)
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
        raise DataError(f"--root {root} does not exist; pass the folder that holds vtab-1k/ and the FGVC folders")
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
                f"{', '.join(d.folder for d in FGVC_DATASETS.values())}); prepare them with peftbench-prepare "
                "vtab / fgvc, or pass the right --root"
            )
    return [
        verify_vtab_task(root / "vtab-1k" / n, VTAB_TASKS[n], partial, check_images)
        if s == "vtab"
        else verify_fgvc_dataset(root / FGVC_DATASETS[n].folder, FGVC_DATASETS[n], partial, check_images)
        for s, n in chosen
    ]
