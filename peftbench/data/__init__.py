"""Data: VTAB-1k and FGVC readers, preprocessing, and the embedded offline tasks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Dataset

from peftbench.data.config import ALIASES, DataConfig, DatasetConfig, canonical_option, make_dataset_config
from peftbench.data.embedded import ensure_embedded
from peftbench.data.readers import (
    FGVC_LAYOUT,
    VTAB_LAYOUT,
    ImageListDataset,
    fgvc_label_map,
    manifest_sha256,
    read_json_split,
    read_list_file,
)
from peftbench.data.transforms import build_transforms, normalization
from peftbench.errors import ConfigError, DataError

__all__ = [
    "ALIASES",
    "DataConfig",
    "DatasetConfig",
    "Splits",
    "build_split",
    "build_splits",
    "canonical_option",
    "image_folder",
    "image_ids",
    "split_names",
    "make_dataset_config",
    "retransform",
]

# protocol -> (train splits, eval split), per reader
VTAB_SPLITS = {"tune": (("train800",), "val200"), "final": (("train800val200",), "test")}
FGVC_SPLITS = {"tune": (("train",), "val"), "final": (("train", "val"), "test")}
FGVC_FINAL_ONLY_TRAIN = (("train",), "test")  # data.fgvc_final_train=train (VPT, V-PETL Bench)
# every split one can evaluate on, per reader
VTAB_SPLIT_NAMES = ("train800", "val200", "train800val200", "test")
FGVC_SPLIT_NAMES = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclasses.dataclass
class Splits:
    """The datasets of one run and what identifies them."""

    train: Dataset
    eval: Dataset
    train_split: str
    eval_split: str
    manifest_sha256: str
    num_classes: int
    normalization: dict[str, Any]

    def train_with(self, transform: Callable[[Any], Any]) -> Dataset:
        """The training images (and labels) through another transform of PIL images."""
        return retransform(self.train, transform)

    def train_plain(self) -> Dataset:
        """The training images with the evaluation preprocessing (no augmentation)."""
        transform = getattr(self.eval, "transform", None)
        if transform is None:
            raise DataError(f"the evaluation split is a {type(self.eval).__name__}, not an image list: "
                            "its preprocessing cannot be reused for the training images")
        return self.train_with(transform)


def retransform(data: Dataset, transform: Callable[[Any], Any]) -> Dataset:
    """The same images as ``data`` (an image list, or a concatenation of image lists) through ``transform``."""
    if isinstance(data, ImageListDataset):
        return ImageListDataset(data.base, data.entries, transform)
    if isinstance(data, ConcatDataset):
        return ConcatDataset([retransform(d, transform) for d in data.datasets])
    raise DataError(f"cannot re-read the images of a {type(data).__name__} through another transform")


def build_splits(
    dataset: DatasetConfig,
    data: DataConfig,
    protocol: str,
    backbone_mean: tuple[float, ...],
    backbone_std: tuple[float, ...],
) -> Splits:
    """Read the train and evaluation splits of ``dataset`` for ``protocol``.

    ``tune``: VTAB train800 -> val200, FGVC train -> val. ``final``: VTAB train800val200 -> test,
    FGVC train+val -> test. Embedded tasks are generated on first use, then read like VTAB.

    Args:
        dataset: the task.
        data: data root and preprocessing choices.
        protocol: ``tune`` or ``final``.
        backbone_mean: the backbone's pretrained normalisation mean (used when ``data.normalize`` is
            ``backbone``).
        backbone_std: likewise, the standard deviation.

    Returns:
        The two datasets (items ``(image (3, S, S) float, label)``), the split names, the manifest
        hash and the normalisation applied.
    """
    if protocol not in VTAB_SPLITS:
        raise ConfigError(f"protocol={protocol!r}; valid choices: {', '.join(VTAB_SPLITS)}")
    root = Path(data.root).expanduser()
    norm = normalization(data, backbone_mean, backbone_std)
    train_tf, eval_tf = build_transforms(dataset.suite, norm, data.augment, data.randaugment)
    if dataset.suite == "fgvc":
        only_train = protocol == "final" and data.fgvc_final_train == "train"
        return _fgvc(dataset, root, protocol, train_tf, eval_tf, norm, only_train)
    task_dir = root / "vtab-1k" / dataset.folder
    if dataset.suite == "embedded":
        ensure_embedded(dataset.name, task_dir)
    elif not task_dir.is_dir():
        hint = (
            f"data root {root} does not exist"
            if not root.is_dir()
            else f"task folder {task_dir} does not exist"
        )
        raise DataError(
            f"{hint}. VTAB-1k must be prepared in this layout:\n{VTAB_LAYOUT}\n"
            "Prepare it as in the VPT / NOAH instructions (the shared vtab-1k folders work as they are) and pass "
            "data.root=DIR."
        )
    train_names, eval_name = VTAB_SPLITS[protocol]
    named = [
        (s, read_list_file(task_dir / f"{s}.txt", dataset.num_classes)) for s in (*train_names, eval_name)
    ]
    (train_split, train_entries), (_, eval_entries) = named
    return Splits(
        train=ImageListDataset(task_dir, train_entries, train_tf),
        eval=ImageListDataset(task_dir, eval_entries, eval_tf),
        train_split=train_split,
        eval_split=eval_name,
        manifest_sha256=manifest_sha256(named),
        num_classes=dataset.num_classes,
        normalization=norm,
    )


def _fgvc(
    dataset: DatasetConfig,
    root: Path,
    protocol: str,
    train_tf: Callable,
    eval_tf: Callable,
    norm: dict[str, Any],
    only_train: bool = False,
) -> Splits:
    folder = root / dataset.folder
    if not folder.is_dir():
        hint = (
            f"data root {root} does not exist"
            if not root.is_dir()
            else f"dataset folder {folder} does not exist"
        )
        raise DataError(
            f"{hint}. FGVC datasets must be prepared in VPT's layout:\n{FGVC_LAYOUT}\n"
            f"For {dataset.display_name or dataset.name} the images are expected under "
            f"{folder / dataset.image_dir}. Pass data.root=DIR."
        )
    raw = {s: read_json_split(folder / f"{s}.json") for s in ("train", "val", "test")}
    label_of = fgvc_label_map(raw, dataset.num_classes, folder)
    entries = {s: [(k, label_of[v]) for k, v in split.items()] for s, split in raw.items()}
    train_names, eval_name = FGVC_FINAL_ONLY_TRAIN if only_train else FGVC_SPLITS[protocol]
    named = [(s, entries[s]) for s in (*train_names, eval_name)]
    base = folder / dataset.image_dir
    if not base.is_dir():
        raise DataError(
            f"image folder {base} does not exist; the paths in {folder}/*.json are relative to "
            f"<dataset folder>/{dataset.image_dir or '(the folder itself)'} for {dataset.name}. Put the images "
            "there, or set dataset.image_dir to the folder they are in."
        )
    parts = [ImageListDataset(base, entries[s], train_tf) for s in train_names]
    return Splits(
        train=parts[0] if len(parts) == 1 else ConcatDataset(parts),
        eval=ImageListDataset(base, entries[eval_name], eval_tf),
        train_split="+".join(train_names),
        eval_split=eval_name,
        manifest_sha256=manifest_sha256(named),
        num_classes=dataset.num_classes,
        normalization=norm,
    )


def split_names(suite: str) -> tuple[str, ...]:
    """The splits of a task of ``suite`` that :func:`build_split` reads."""
    return FGVC_SPLIT_NAMES if suite == "fgvc" else VTAB_SPLIT_NAMES


def build_split(dataset: DatasetConfig, data: DataConfig, split: str, backbone_mean: tuple[float, ...],
                backbone_std: tuple[float, ...]) -> ImageListDataset:
    """One named split of a task with the evaluation transform (what a run's final evaluation reads).

    Args:
        dataset: the task.
        data: data root and preprocessing choices.
        split: a name of :func:`split_names` (VTAB-1k / embedded: ``train800``, ``val200``,
            ``train800val200``, ``test``; FGVC: ``train``, ``val``, ``test``).
        backbone_mean, backbone_std: the backbone's normalisation (for ``data.normalize=backbone``).

    Raises:
        ConfigError: ``split`` is not a split of the suite.
        DataError: the task's files are missing or malformed.
    """
    valid = split_names(dataset.suite)
    if split not in valid:
        raise ConfigError(f"split {split!r} is not a split of the {dataset.suite} task {dataset.name!r}; "
                          f"valid choices: {', '.join(valid)}")
    protocol = "tune" if split in ("train800", "val200", "val") else "final"
    splits = build_splits(dataset, data, protocol, backbone_mean, backbone_std)
    if split == splits.eval_split:
        return splits.eval  # type: ignore[return-value]
    norm = splits.normalization
    _, eval_tf = build_transforms(dataset.suite, norm)
    root = Path(data.root).expanduser()
    if dataset.suite == "fgvc":
        folder = root / dataset.folder
        raw = {s: read_json_split(folder / f"{s}.json") for s in FGVC_SPLIT_NAMES}
        label_of = fgvc_label_map(raw, dataset.num_classes, folder)
        entries = [(k, label_of[v]) for k, v in raw[split].items()]
        return ImageListDataset(folder / dataset.image_dir, entries, eval_tf)
    task_dir = root / "vtab-1k" / dataset.folder
    return ImageListDataset(task_dir, read_list_file(task_dir / f"{split}.txt", dataset.num_classes), eval_tf)


def image_folder(folder: str | Path, dataset: DatasetConfig, data: DataConfig, backbone_mean: tuple[float, ...],
                 backbone_std: tuple[float, ...]) -> ImageListDataset:
    """Every image file below ``folder`` (sorted paths, no labels: label -1) with the task's evaluation transform.

    Raises:
        DataError: the folder does not exist or holds no image file.
    """
    base = Path(folder).expanduser()
    if not base.is_dir():
        raise DataError(f"image folder {base} does not exist; pass a folder of image files")
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {base} holds no image file ({', '.join(IMAGE_SUFFIXES)})")
    _, eval_tf = build_transforms(dataset.suite, normalization(data, backbone_mean, backbone_std))
    return ImageListDataset(base, [(p.relative_to(base).as_posix(), -1) for p in files], eval_tf)


def image_ids(data: Dataset) -> list[str] | None:
    """The image paths of a split as its list file names them (None for other datasets)."""
    entries = getattr(data, "entries", None)
    return [rel for rel, _ in entries] if entries is not None else None
