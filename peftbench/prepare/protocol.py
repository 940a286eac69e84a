"""The protocol tables the preparation and the checks share: VTAB-1k split recipes, FGVC split sizes.

VTAB-1k (Zhai et al., 2019; the task definitions of the VTAB code base, reused by VPT / NOAH):
``train800`` is always the first 800 examples of the source's training split, ``val200`` 200
examples from a fixed offset of one split, ``train800val200`` their union, and ``test`` a whole
split or a tail of one. Offsets given in percent are ``len(split) * percent // 100``, as the VTAB
code computes them before it builds its split strings.

TFDS versions: the dataset versions VPT's VTAB set-up reports using (KMnP/vpt ``VTAB_SETUP.md``, "TFDS version",
with tfds 4.4.0+nightly; its loaders ask for ``<name>:<major>.*.*``); a build from TFDS asks for exactly these.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Part:
    """A contiguous range of a source split: ``split[offset : offset + count]``.

    Attributes:
        split: the source split (TFDS names: ``train``, ``validation``, ``test``).
        start_percent: where the range starts, in percent of the split's length.
        count: examples taken; ``None`` = up to the end of the split.
    """

    split: str
    start_percent: int = 0
    count: int | None = None

    def bounds(self, length: int) -> tuple[int, int]:
        """``(start, stop)`` indices for a split of ``length`` examples."""
        start = length * self.start_percent // 100
        stop = length if self.count is None else start + self.count
        return start, stop

    def describe(self) -> str:
        start = f"{self.start_percent}%" if self.start_percent else ""
        stop = "" if self.count is None else f"+{self.count}"
        return f"{self.split}[{start}:{stop}]" if stop or start else self.split


@dataclasses.dataclass(frozen=True)
class VtabTask:
    """One VTAB-1k task: folder name, class count, TFDS source and version, label rule and split recipe."""

    name: str
    num_classes: int
    tfds_name: str
    tfds_version: str  # the version VPT's VTAB_SETUP.md names
    label: str  # how the label is derived (recorded in source.json)
    val200: Part
    test: Part
    test_size: int  # examples in ``test`` for the TFDS source the protocol uses

    @property
    def train800(self) -> Part:
        return Part("train", 0, 800)

    @property
    def tfds_spec(self) -> str:
        """``name:version`` as ``tensorflow_datasets.builder`` takes it, e.g. ``cifar100:3.0.2``."""
        return f"{self.tfds_name}:{self.tfds_version}"


# KMnP/vpt @ 4410440 : VTAB_SETUP.md, "Here are what we used for VPT" (tfds 4.4.0+nightly)
TFDS_VERSIONS: dict[str, str] = {
    "cifar100": "3.0.2", "caltech101": "3.0.1", "dtd": "3.0.1", "oxford_flowers102": "2.1.1",
    "oxford_iiit_pet": "3.2.0", "svhn_cropped": "3.0.0", "sun397/tfds": "4.0.0", "patch_camelyon": "2.0.0",
    "eurosat/rgb": "2.0.0", "resisc45": "3.0.0", "diabetic_retinopathy_detection/btgraham-300": "3.0.0",
    "clevr": "3.1.0", "dmlab": "2.0.1", "kitti": "3.2.0", "dsprites": "2.0.0", "smallnorb": "2.0.0",
}


def _task(name, classes, tfds_name, label, val200, test, test_size) -> VtabTask:
    return VtabTask(name, classes, tfds_name, TFDS_VERSIONS[tfds_name], label, val200, test, test_size)


_TRAIN90, _TRAIN80, _TRAIN60 = Part("train", 90, 200), Part("train", 80, 200), Part("train", 60, 200)
_VAL, _TEST, _VALIDATION = Part("validation", 0, 200), Part("test"), Part("validation")

VTAB_TASKS: dict[str, VtabTask] = {
    t.name: t
    for t in (
        _task("cifar", 100, "cifar100", "label (fine class)", _TRAIN90, _TEST, 10000),
        _task("caltech101", 102, "caltech101", "label (102 classes incl. BACKGROUND_Google)", _TRAIN90, _TEST, 6084),
        _task("dtd", 47, "dtd", "label", _VAL, _TEST, 1880),
        _task("oxford_flowers102", 102, "oxford_flowers102", "label", _VAL, _TEST, 6149),
        _task("oxford_iiit_pet", 37, "oxford_iiit_pet", "label (breed)", _TRAIN80, _TEST, 3669),
        _task("svhn", 10, "svhn_cropped", "label (digit, 10 -> 0)", _TRAIN90, _TEST, 26032),
        _task("sun397", 397, "sun397/tfds", "label", _VAL, _TEST, 21750),
        _task("patch_camelyon", 2, "patch_camelyon", "label", _VAL, _TEST, 32768),
        _task("eurosat", 10, "eurosat/rgb", "label", _TRAIN60, Part("train", 80), 5400),
        _task("resisc45", 45, "resisc45", "label", _TRAIN60, Part("train", 80), 6300),
        _task(
            "diabetic_retinopathy", 5, "diabetic_retinopathy_detection/btgraham-300", "label", _VAL, _TEST, 42670
        ),
        _task("clevr_count", 8, "clevr", "number of objects - 3", _TRAIN90, _VALIDATION, 15000),
        _task(
            "clevr_dist", 6, "clevr",
            "depth of the closest object, bins [0, 8, 8.5, 9, 9.5, 10, 100]", _TRAIN90, _VALIDATION, 15000,
        ),
        _task("dmlab", 6, "dmlab", "label", _VAL, _TEST, 22735),
        _task(
            "kitti", 4, "kitti",
            "distance of the closest car/van/truck, bins [-100, 8, 20, 999] (none = 3)", _VAL, _TEST, 711,
        ),
        _task("dsprites_loc", 16, "dsprites", "x position index // 2", _TRAIN80, Part("train", 90), 73728),
        _task(
            "dsprites_ori", 16, "dsprites", "orientation index * 16 // 40", _TRAIN80, Part("train", 90), 73728
        ),
        _task("smallnorb_azi", 18, "smallnorb", "azimuth", Part("test", 0, 200), Part("test", 50), 12150),
        _task("smallnorb_ele", 9, "smallnorb", "elevation", Part("test", 0, 200), Part("test", 50), 12150),
    )
}

VTAB_LISTS = ("train800", "val200", "train800val200", "test")
VTAB_TRAIN_SIZES = {"train800": 800, "val200": 200, "train800val200": 1000}


@dataclasses.dataclass(frozen=True)
class FgvcDataset:
    """One FGVC dataset in VPT's layout and the split sizes VPT reports.

    Attributes:
        name: peftbench's dataset name (``configs/dataset/fgvc/<name>.yaml``).
        folder: ``<root>/<folder>`` holds the json files.
        image_dir: the json paths are relative to ``<root>/<folder>/<image_dir>``.
        num_classes: classes.
        sizes: examples in train / val / test (VPT's split of the official training set).
    """

    name: str
    folder: str
    image_dir: str
    num_classes: int
    sizes: dict[str, int]


FGVC_DATASETS: dict[str, FgvcDataset] = {
    d.name: d
    for d in (
        FgvcDataset("cub", "CUB_200_2011", "images", 200, {"train": 5394, "val": 600, "test": 5794}),
        FgvcDataset("nabirds", "nabirds", "images", 555, {"train": 21536, "val": 2393, "test": 24633}),
        FgvcDataset("oxford_flowers", "OxfordFlower", "", 102, {"train": 1020, "val": 1020, "test": 6149}),
        FgvcDataset("stanford_dogs", "StanfordDogs", "Images", 120, {"train": 10800, "val": 1200, "test": 8580}),
        FgvcDataset("stanford_cars", "StanfordCars", "", 196, {"train": 7329, "val": 815, "test": 8041}),
    )
}
FGVC_SPLITS = ("train", "val", "test")
