"""Readers for the standard on-disk layouts, with errors that point at the file and line.

VTAB-1k (the layout NOAH / RepAdapter / V-PETL Bench share)::

    <root>/vtab-1k/<task>/train800.txt          "relative/path label" per line, paths relative to the task folder
    <root>/vtab-1k/<task>/val200.txt
    <root>/vtab-1k/<task>/train800val200.txt
    <root>/vtab-1k/<task>/test.txt

FGVC (VPT's layout)::

    <root>/<dataset>/{train,val,test}.json      {"relative/image/path": class_id, ...}
    image paths relative to <root>/<dataset>/<image_dir>

As in VPT's json reader, FGVC class ids are mapped to contiguous labels 0..C-1 in sorted order of the
ids found in the split files, so the ids need not be 0-based or contiguous (the official CUB ids are
1-based, the NABirds ids are sparse).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from peftbench.errors import DataError

Entry = tuple[str, int]  # (path relative to the image base folder, label)

VTAB_LAYOUT = """\
<data.root>/vtab-1k/<task>/images/...          the images
<data.root>/vtab-1k/<task>/train800.txt        one "relative/path label" per line
<data.root>/vtab-1k/<task>/val200.txt
<data.root>/vtab-1k/<task>/train800val200.txt
<data.root>/vtab-1k/<task>/test.txt"""

FGVC_LAYOUT = """\
<data.root>/<dataset>/<image folder>/...        the images (image folder: images/, Images/ or the dataset folder)
<data.root>/<dataset>/train.json, val.json, test.json   {"relative/image/path": class_id}
(train.json / val.json are VPT's published split of the official training set)"""


def read_list_file(path: Path, num_classes: int) -> list[Entry]:
    """Parse a VTAB-1k list file; every line must be ``<relative path> <label>`` with 0 <= label < C.

    The path may contain spaces (the label is the last field); blank lines are skipped.

    Args:
        path: the list file, e.g. ``<root>/vtab-1k/cifar/train800.txt``.
        num_classes: the task's class count.

    Returns:
        ``(path relative to the task folder, label)`` entries in file order.
    """
    if not path.is_file():
        raise DataError(f"split file {path} is missing; expected the VTAB-1k layout:\n{VTAB_LAYOUT}")
    entries: list[Entry] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected '<relative path> <label>', got {line!r}")
        rel, raw = parts
        try:
            label = int(raw)
        except ValueError:
            raise DataError(f"{path}:{lineno}: label {raw!r} is not an integer (line {line!r})") from None
        if not 0 <= label < num_classes:
            raise DataError(
                f"{path}:{lineno}: label {label} is out of range [0, {num_classes}) for this task"
            )
        entries.append((rel.strip(), label))
    if not entries:
        raise DataError(f"split file {path} has no entries")
    return entries


def read_json_split(path: Path) -> dict[str, int]:
    """Parse one FGVC json split.

    Args:
        path: e.g. ``<root>/CUB_200_2011/train.json``.

    Returns:
        ``{image path relative to the image folder: class id}`` in file order.
    """
    if not path.is_file():
        raise DataError(f"split file {path} is missing; expected the FGVC layout:\n{FGVC_LAYOUT}")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object mapping image path -> class id")
    out: dict[str, int] = {}
    for key, value in obj.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"{path}: key {key!r}: class id {value!r} is not an integer")
        out[key] = value
    return out


def fgvc_label_map(splits: dict[str, dict[str, int]], num_classes: int, folder: Path) -> dict[int, int]:
    """Contiguous labels 0..C-1 from the sorted class ids of all split files.

    VPT maps the sorted ids of each split file on its own; taking the union over train, val and test
    gives the same labels when every split holds every class and stays consistent when one does not.

    Args:
        splits: split name -> ``{relative path: class id}`` as read from ``<folder>/<split>.json``.
        num_classes: the task's class count; the files must hold exactly that many distinct ids.
        folder: the dataset folder (for messages).

    Returns:
        class id -> label.
    """
    ids = sorted({v for split in splits.values() for v in split.values()})
    if len(ids) == num_classes:
        return {cid: i for i, cid in enumerate(ids)}
    if len(ids) > num_classes and ids[0] in (0, 1):
        # 0- or 1-based ids (CUB's are 1-based): the ids past the last class are the culprits
        first, last = ids[0], ids[0] + num_classes - 1
        bad = [(s, k, v) for s, split in splits.items() for k, v in split.items() if not first <= v <= last]
        where = "; ".join(f"{folder / (s + '.json')}: key {k!r}: class id {v}" for s, k, v in bad[:3])
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise DataError(
            f"{where}{more}: out of range for a task with {num_classes} classes (ids {first}..{last}); "
            "fix the json file, or check that dataset.num_classes and dataset.folder name the right dataset"
        )
    raise DataError(
        f"{folder}: the split files hold {len(ids)} distinct class ids, the task has {num_classes} classes; "
        "the json files do not belong to this dataset or are incomplete (check dataset.folder and "
        "dataset.num_classes, or re-download VPT's split files)"
    )


def manifest_sha256(named: list[tuple[str, list[Entry]]]) -> str:
    """SHA-256 over ``split<TAB>path<TAB>label`` lines of the used splits, in order.

    Args:
        named: ``(split name, entries)`` for the train split(s), then the evaluation split.

    Returns:
        The hex digest recorded with every run.
    """
    h = hashlib.sha256()
    for split, entries in named:
        for rel, label in entries:
            h.update(f"{split}\t{rel}\t{label}\n".encode())
    return h.hexdigest()


class ImageListDataset(Dataset):
    """Images from ``(relative path, label)`` entries below a base folder."""

    def __init__(self, base: Path, entries: list[Entry], transform) -> None:
        self.base, self.entries, self.transform = base, entries, transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rel, label = self.entries[index]
        path = self.base / rel
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        return self.transform(image), label
