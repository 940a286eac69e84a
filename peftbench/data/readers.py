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
ids found in the split files (CUB's files, for example, use 1-based ids).
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
<data.root>/<dataset>/<image folder>/...        the images
<data.root>/<dataset>/train.json, val.json, test.json   {"relative/image/path": class_id}"""


def read_list_file(path: Path, num_classes: int) -> list[Entry]:
    """Parse a VTAB-1k list file; every line must be ``<relative path> <label>`` with 0 <= label < C."""
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
            raise DataError(f"{path}:{lineno}: label {label} is out of range [0, {num_classes}) for this task")
        entries.append((rel.strip(), label))
    if not entries:
        raise DataError(f"split file {path} has no entries")
    return entries


def read_json_split(path: Path) -> dict[str, int]:
    """Parse one FGVC json split (``{relative path: class id}``)."""
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
    """Contiguous labels from the sorted class ids of all split files; their count must be C."""
    ids = sorted({v for split in splits.values() for v in split.values()})
    if len(ids) != num_classes:
        raise DataError(
            f"{folder}: the split files hold {len(ids)} distinct class ids, the task has {num_classes} classes; "
            "the json files do not belong to this dataset or are incomplete"
        )
    return {cid: i for i, cid in enumerate(ids)}


def manifest_sha256(named: list[tuple[str, list[Entry]]]) -> str:
    """SHA-256 over ``split<TAB>path<TAB>label`` lines of the used splits, in order."""
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
