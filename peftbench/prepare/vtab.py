"""Build ``<root>/vtab-1k/<task>/`` (PNG images + the four list files) from the original datasets.

Two sources, one recipe (:mod:`peftbench.prepare.protocol`):

* **torchvision** (no TensorFlow): the original files in torchvision's folder layout, for the tasks
  whose source splits are the ones the VTAB definitions use. cifar, dtd, oxford_flowers102,
  oxford_iiit_pet, svhn, eurosat, patch_camelyon and clevr_count are read by torchvision's classes;
  clevr_dist (same CLEVR folder, depth label from the scene files) and dsprites_* (the original
  ``.npz``) by the small readers in :mod:`peftbench.prepare.originals`, torchvision having none.
  torchvision lists a split in file order (DTD's lists are sorted by class), while TFDS stores
  examples in its own hashed order, so each source split is permuted with a fixed seed before the
  recipe's ranges are taken: the recipe (which split, which offset, how many) is VTAB's, the
  particular 1000 training images differ from those of a TFDS-built folder.
* **tensorflow-datasets** (``pip install 'peftbench[tfds]'``) for every task, in TFDS order, i.e. the
  exact VTAB-1k images, at the dataset versions VPT used (``protocol.TFDS_VERSIONS``). It is the only
  source for caltech101 (torchvision has no train/test split and drops BACKGROUND_Google), sun397
  (the TFDS split is TFDS's own), resisc45 and diabetic_retinopathy (no torchvision class), dmlab,
  kitti (TFDS's own split of the training set, torchvision has detection targets only) and smallnorb_*.

Reading prepared folders never needs TensorFlow; only building from TFDS does.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from peftbench.errors import DataError, UnknownNameError
from peftbench.prepare.originals import CLEVR_DIST_BINS, closest_bin
from peftbench.prepare.protocol import VTAB_TASKS, Part, VtabTask
from peftbench.prepare.writer import (
    finish,
    is_complete,
    save_png_atomic,
    staging_dir,
    write_json_atomic,
    write_text_atomic,
)

Item = tuple[int, Image.Image, int]  # (index in the source split, image, label)
SOURCES = ("auto", "torchvision", "tfds")


@dataclasses.dataclass(frozen=True)
class TvSpec:
    """How one task is read with a torchvision dataset class.

    Attributes:
        cls: the dataset class, ``module.Class`` (``torchvision.datasets.DTD``).
        layout: what the class expects below ``--download-dir`` (for messages).
        splits: TFDS split name -> keyword arguments selecting it.
        subdir: folder below ``--download-dir`` passed as the class's ``root``.
        label: maps the class's label to VTAB's (CLEVR gives the object count, VTAB counts - 3).
    """

    cls: str
    layout: str
    splits: dict[str, dict[str, Any]]
    subdir: str = ""
    label: Callable[[int], int] = int


_TRAIN_VAL_TEST = {"train": {"split": "train"}, "validation": {"split": "val"}, "test": {"split": "test"}}
_TV, _OWN = "torchvision.datasets.", "peftbench.prepare.originals."
_CLEVR = "clevr/CLEVR_v1.0/{images,scenes}/ (CLEVR_v1.0.zip extracted into clevr/)"
_DSPRITES = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
TORCHVISION: dict[str, TvSpec] = {
    "cifar": TvSpec(
        _TV + "CIFAR100", "cifar-100-python/{train,test,meta} (cifar-100-python.tar.gz extracted)",
        {"train": {"train": True}, "test": {"train": False}},
    ),
    "dtd": TvSpec(_TV + "DTD", "dtd/dtd/{images,labels}/ (dtd-r1.0.1.tar.gz extracted into dtd/)", _TRAIN_VAL_TEST),
    "oxford_flowers102": TvSpec(
        _TV + "Flowers102", "flowers-102/{jpg/,imagelabels.mat,setid.mat}", _TRAIN_VAL_TEST
    ),
    "oxford_iiit_pet": TvSpec(
        _TV + "OxfordIIITPet", "oxford-iiit-pet/{images,annotations}/ (images.tar.gz and annotations.tar.gz extracted)",
        {"train": {"split": "trainval"}, "test": {"split": "test"}},
    ),
    "svhn": TvSpec(
        _TV + "SVHN", "svhn/{train,test}_32x32.mat", {"train": {"split": "train"}, "test": {"split": "test"}}, "svhn"
    ),
    "eurosat": TvSpec(_TV + "EuroSAT", "eurosat/2750/<class>/*.jpg (EuroSAT.zip extracted into eurosat/)", {"train": {}}),
    "patch_camelyon": TvSpec(
        _TV + "PCAM", "pcam/camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5 (gunzipped; needs h5py: pip install 'peftbench[prepare]')",
        _TRAIN_VAL_TEST,
    ),
    "clevr_count": TvSpec(
        _TV + "CLEVRClassification", _CLEVR, {"train": {"split": "train"}, "validation": {"split": "val"}},
        label=lambda count: count - 3,
    ),
    "clevr_dist": TvSpec(
        _OWN + "ClevrDistance", _CLEVR, {"train": {"split": "train"}, "validation": {"split": "val"}}
    ),
    "dsprites_loc": TvSpec(
        _OWN + "Dsprites", _DSPRITES, {"train": {"label": "x_position"}}, label=lambda x: x // 2
    ),
    "dsprites_ori": TvSpec(
        _OWN + "Dsprites", _DSPRITES, {"train": {"label": "orientation"}}, label=lambda o: o * 16 // 40
    ),
}


class TorchvisionSource:
    """A task's source splits through torchvision's dataset classes (``download=False``) or, where
    torchvision has none, the readers in :mod:`peftbench.prepare.originals`."""

    kind = "torchvision"

    def __init__(self, task: VtabTask, download_dir: Path, seed: int = 0) -> None:
        import torchvision

        self.task, self.spec, self.seed = task, TORCHVISION[task.name], seed
        self.version = torchvision.__version__
        self.root = download_dir / self.spec.subdir if self.spec.subdir else download_dir
        self._datasets: dict[str, Any] = {}

    def _dataset(self, split: str) -> Any:
        if split not in self._datasets:
            module, _, name = self.spec.cls.rpartition(".")
            try:
                ds = getattr(importlib.import_module(module), name)(
                    str(self.root), download=False, **self.spec.splits[split]
                )
                self._datasets[split] = (ds, len(ds))
            except (RuntimeError, OSError, ImportError, ValueError, KeyError) as exc:
                raise DataError(
                    f"{self.task.name}: {self.spec.cls} cannot read {self.root} ({exc}). "
                    f"Expected below --download-dir: {self.spec.layout}. Download the original files there"
                    + (" (or let torchvision do it once with download=True)" if self.spec.cls.startswith(_TV) else "")
                    + ", or use --source tfds"
                ) from None
        return self._datasets[split]

    def lengths(self) -> dict[str, int]:
        return {split: self._dataset(split)[1] for split in self.spec.splits}

    def order(self, split: str) -> np.ndarray:
        """The seeded permutation of a split that stands in for TFDS's shuffled storage order."""
        return np.random.default_rng(self.seed).permutation(self._dataset(split)[1])

    def items(self, split: str, start: int, stop: int) -> Iterator[Item]:
        ds, order = self._dataset(split)[0], self.order(split)
        for pos in range(start, stop):
            index = int(order[pos])
            try:
                image, label = ds[index]
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"{self.task.name}: example {index} of the {split!r} split cannot be read ({exc}); "
                    "the download is damaged, fetch it again"
                ) from None
            yield index, image, self.spec.label(int(label))

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.spec.cls,
            "version": f"torchvision {self.version}" if self.spec.cls.startswith(_TV) else "original download files",
            "split_map": {k: v for k, v in self.spec.splits.items()},
            "order": f"each source split permuted with numpy.random.default_rng({self.seed}).permutation",
            "note": "same split recipe as VTAB's TFDS definition; TFDS's storage order differs from this "
            "permutation, so the images are a different draw from the same source splits",
        }


def _kitti_label(ex: dict[str, Any]) -> int:
    objects = ex["objects"]
    depth = np.where(np.asarray(objects["type"]) < 3, np.asarray(objects["location"])[:, 2], 1000.0)
    return closest_bin(np.append(depth, 1000.0), [-100.0, 8.0, 20.0, 999.0])  # type < 3: car, van, truck


TFDS_LABELS: dict[str, Callable[[dict[str, Any]], int]] = {
    "clevr_count": lambda ex: len(ex["objects"]["size"]) - 3,
    "clevr_dist": lambda ex: closest_bin(np.asarray(ex["objects"]["pixel_coords"])[:, 2], CLEVR_DIST_BINS),
    "kitti": _kitti_label,
    "dsprites_loc": lambda ex: int(ex["label_x_position"]) // 2,
    "dsprites_ori": lambda ex: int(ex["label_orientation"]) * 16 // 40,
    "smallnorb_azi": lambda ex: int(ex["label_azimuth"]),
    "smallnorb_ele": lambda ex: int(ex["label_elevation"]),
}


class TfdsSource:
    """A task's source splits through tensorflow-datasets, in TFDS order (the exact VTAB-1k images)."""

    kind = "tfds"

    def __init__(self, task: VtabTask, data_dir: Path | None) -> None:
        try:
            self.tfds = importlib.import_module("tensorflow_datasets")
        except ImportError:
            raise DataError(
                f"{task.name}: building from TFDS needs tensorflow-datasets, which is not installed; "
                "install it with pip install 'peftbench[tfds]'"
                + (", or use --source torchvision for this task" if task.name in TORCHVISION else "")
            ) from None
        self.task = task
        try:
            self.builder = self.tfds.builder(task.tfds_spec, data_dir=str(data_dir) if data_dir else None)
        except Exception as exc:  # TFDS raises several types for a version it does not know
            raise DataError(
                f"{task.name}: tensorflow-datasets has no {task.tfds_spec} ({exc}). VTAB-1k is built from the "
                f"version VPT used ({task.tfds_version}, KMnP/vpt VTAB_SETUP.md, tfds 4.4.0 nightly); install a "
                "tensorflow-datasets release that still provides it"
            ) from None
        try:
            self.builder.download_and_prepare()
        except Exception as exc:  # TFDS raises many types (manual downloads, checksums, network)
            raise DataError(
                f"{task.name}: tensorflow-datasets could not prepare {task.tfds_spec}: {exc}. "
                "Datasets that need a manual download (e.g. diabetic_retinopathy_detection, resisc45) must be "
                "placed in TFDS's manual folder first; see the TFDS catalog page of the dataset"
            ) from None

    def lengths(self) -> dict[str, int]:
        return {name: split.num_examples for name, split in self.builder.info.splits.items()}

    def items(self, split: str, start: int, stop: int) -> Iterator[Item]:
        ds = self.builder.as_dataset(split=f"{split}[{start}:{stop}]", shuffle_files=False)
        label_of = TFDS_LABELS.get(self.task.name, lambda ex: int(ex["label"]))
        for i, ex in enumerate(self.tfds.as_numpy(ds)):
            pixels = np.asarray(ex["image"])
            if self.task.tfds_name == "dsprites":
                pixels = pixels * 255  # stored as 0/1
            pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
            yield start + i, Image.fromarray(pixels.astype(np.uint8)), label_of(ex)

    def describe(self) -> dict[str, Any]:
        return {
            "source": f"tfds:{self.task.tfds_name}",
            "version": str(self.builder.info.version),
            "requested": self.task.tfds_spec,
            "order": "TFDS storage order (as VTAB reads it)",
        }


def make_source(task: VtabTask, source: str, download_dir: Path, tfds_dir: Path | None, seed: int = 0):
    """The source for ``task``: ``auto`` = torchvision where it matches, else TFDS."""
    if source not in SOURCES:
        raise UnknownNameError("source", source, SOURCES)
    if source == "torchvision" and task.name not in TORCHVISION:
        raise DataError(
            f"{task.name}: torchvision has no reader for this task's VTAB splits; use --source tfds "
            f"(torchvision covers: {', '.join(sorted(TORCHVISION))})"
        )
    if source == "tfds" or task.name not in TORCHVISION:
        return TfdsSource(task, tfds_dir)
    return TorchvisionSource(task, download_dir, seed)


def resolve_tasks(names: list[str] | None) -> list[VtabTask]:
    """Tasks by folder name (all 19 when ``names`` is empty); aliases as in ``configs/dataset/vtab``."""
    from peftbench.data.config import canonical_option

    if not names:
        return list(VTAB_TASKS.values())
    out = []
    for name in names:
        canonical = canonical_option(f"vtab/{name}").partition("/")[2]
        if canonical not in VTAB_TASKS:
            raise UnknownNameError("VTAB-1k task", name, VTAB_TASKS)
        out.append(VTAB_TASKS[canonical])
    return out


def prepare_task(
    task: VtabTask, vtab_dir: Path, make: Callable[[], Any], log: Callable[[str], None] = print
) -> str:
    """Build one task folder; returns ``prepared``, ``skipped`` (complete) or ``kept`` (foreign folder).

    Images already written to the staging folder by an interrupted run are kept and not re-encoded.
    """
    task_dir = vtab_dir / task.name
    if is_complete(task_dir):
        log(f"{task.name}: already prepared ({task_dir}), skipped")
        return "skipped"
    if task_dir.exists():
        log(
            f"{task.name}: {task_dir} exists but was not written by peftbench-prepare; left untouched "
            "(check it with peftbench-prepare verify, or move it away to rebuild it)"
        )
        return "kept"
    source = make()
    lengths = source.lengths()
    staging = staging_dir(task_dir)
    # images in the staging folder are named by source index: reuse them only from the same source
    signature, sig_file = {"task": task.name, **source.describe()}, staging / ".partial-source.json"
    if staging.exists():
        previous = json.loads(sig_file.read_text()) if sig_file.is_file() else None
        if previous != signature:
            log(f"{task.name}: discarding the unfinished build in {staging} (it came from another source)")
            shutil.rmtree(staging)
        else:
            log(f"{task.name}: resuming the unfinished build in {staging}")
    write_json_atomic(sig_file, signature)
    rows: dict[str, list[str]] = {}
    recipe: dict[str, str] = {}
    parts: dict[str, Part] = {"train800": task.train800, "val200": task.val200, "test": task.test}
    for list_name, part in parts.items():
        if part.split not in lengths:
            raise DataError(f"{task.name}: the source has no {part.split!r} split (it has {sorted(lengths)})")
        start, stop = part.bounds(lengths[part.split])
        if stop > lengths[part.split]:
            raise DataError(
                f"{task.name}: {list_name} needs {part.describe()} = [{start}:{stop}] but the {part.split!r} "
                f"split has {lengths[part.split]} examples; the source files are incomplete"
            )
        recipe[list_name] = f"{part.describe()} = {part.split}[{start}:{stop}]"
        rows[list_name] = []
        for index, image, label in source.items(part.split, start, stop):
            if not 0 <= label < task.num_classes:
                raise DataError(
                    f"{task.name}: {part.split} example {index} has label {label}, outside [0, {task.num_classes}); "
                    "the source does not hold this task's data"
                )
            rel = f"images/{part.split}/{index:06d}.png"
            if not (staging / rel).is_file():
                save_png_atomic(image if image.mode in ("RGB", "L") else image.convert("RGB"), staging / rel)
            rows[list_name].append(f"{rel} {label}")
    rows["train800val200"] = rows["train800"] + rows["val200"]
    recipe["train800val200"] = "train800 + val200"
    for list_name, lines in rows.items():
        write_text_atomic(staging / f"{list_name}.txt", "\n".join(lines) + "\n")
    counts = {name: len(lines) for name, lines in rows.items()}
    info = {
        "task": task.name,
        "num_classes": task.num_classes,
        "label": task.label,
        "protocol_source": f"tfds:{task.tfds_spec}",
        **source.describe(),
        "source_split_sizes": lengths,
        "recipe": recipe,
        "counts": counts,
    }
    write_json_atomic(staging / "source.json", info)
    sig_file.unlink()
    finish(staging, task_dir, {"task": task.name, "counts": counts})
    log(f"{task.name}: prepared from {info['source']} -> " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "prepared"


def prepare_vtab(
    root: Path,
    tasks: list[str] | None = None,
    source: str = "auto",
    download_dir: Path | None = None,
    tfds_dir: Path | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Prepare VTAB-1k tasks below ``<root>/vtab-1k/``; complete tasks are skipped.

    Args:
        root: the data root (``data.root`` of the runs).
        tasks: folder names or aliases; all 19 when empty.
        source: ``auto`` (torchvision where it matches, else TFDS), ``torchvision`` or ``tfds``.
        download_dir: where the torchvision-layout originals are (default ``<root>/downloads``).
        tfds_dir: TFDS data folder (default: TFDS's own default).
        seed: seed of the permutation that orders torchvision splits.
        log: receives one line per task.

    Returns:
        task -> ``prepared`` / ``skipped`` / ``kept``; tasks that failed raise one :class:`DataError`
        after the others were attempted.
    """
    if source not in SOURCES:
        raise UnknownNameError("source", source, SOURCES)
    selected = resolve_tasks(tasks)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"--root {root} does not exist; create it (mkdir -p {root}) or pass an existing folder")
    download_dir = Path(download_dir).expanduser() if download_dir else root / "downloads"
    vtab_dir = root / "vtab-1k"
    vtab_dir.mkdir(exist_ok=True)
    status: dict[str, str] = {}
    failed: list[str] = []
    for task in selected:
        try:
            status[task.name] = prepare_task(
                task, vtab_dir, lambda t=task: make_source(t, source, download_dir, tfds_dir, seed), log
            )
        except DataError as exc:
            log(f"{task.name}: FAILED: {exc}")
            failed.append(task.name)
    if failed:
        raise DataError(
            f"{len(failed)} of {len(selected)} tasks could not be prepared ({', '.join(failed)}); the messages "
            "above say why. Completed tasks are kept; re-run the same command after fixing the sources"
        )
    return status
