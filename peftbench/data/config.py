"""Typed configs of the ``dataset:`` and ``data:`` blocks, and the dataset aliases."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from peftbench.errors import ConfigError

SUITES = ("vtab", "fgvc", "embedded")
GROUPS = ("natural", "specialized", "structured")
NORMALIZE = ("backbone", "imagenet", "inception", "none")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
AUGMENTS = ("none", "randaugment")
FGVC_FINAL_TRAIN = ("train_val", "train")

# Names used in the wild -> the canonical config option (``configs/dataset/<suite>/<name>.yaml``).
# Each alias is also a tiny YAML whose defaults list pulls in the canonical one, so ``dataset.name``
# (and with it the results) stays canonical; a test checks that this dict and those YAMLs agree.
ALIASES: dict[str, str] = {
    "vtab/cifar100": "vtab/cifar",
    "vtab/caltech": "vtab/caltech101",
    "vtab/flowers102": "vtab/oxford_flowers102",
    "vtab/oxford_flowers": "vtab/oxford_flowers102",
    "vtab/pets": "vtab/oxford_iiit_pet",
    "vtab/oxford_pet": "vtab/oxford_iiit_pet",
    "vtab/svhn_cropped": "vtab/svhn",
    "vtab/sun": "vtab/sun397",
    "vtab/camelyon": "vtab/patch_camelyon",
    "vtab/pcam": "vtab/patch_camelyon",
    "vtab/resisc": "vtab/resisc45",
    "vtab/retinopathy": "vtab/diabetic_retinopathy",
    "vtab/diabetic_retinopathy_detection": "vtab/diabetic_retinopathy",
    "vtab/clevr_count_all": "vtab/clevr_count",
    "vtab/clevr_closest_object_distance": "vtab/clevr_dist",
    "vtab/dmlab_frames": "vtab/dmlab",
    "vtab/kitti_dist": "vtab/kitti",
    "vtab/kitti_closest_vehicle_distance": "vtab/kitti",
    "vtab/dsprites_location": "vtab/dsprites_loc",
    "vtab/dsprites_orientation": "vtab/dsprites_ori",
    "vtab/smallnorb_azimuth": "vtab/smallnorb_azi",
    "vtab/smallnorb_elevation": "vtab/smallnorb_ele",
    "fgvc/cub200": "fgvc/cub",
    "fgvc/cub_200_2011": "fgvc/cub",
    "fgvc/flowers": "fgvc/oxford_flowers",
    "fgvc/dogs": "fgvc/stanford_dogs",
    "fgvc/cars": "fgvc/stanford_cars",
}


def canonical_option(option: str) -> str:
    """The canonical config option of ``option`` (``"vtab/cifar100"`` -> ``"vtab/cifar"``); others unchanged."""
    return ALIASES.get(option, option)


@dataclasses.dataclass
class DatasetConfig:
    """One task, from ``configs/dataset/<suite>/<name>.yaml``.

    Attributes:
        name: canonical task name (aliases resolve to it).
        suite: ``vtab``, ``fgvc`` or ``embedded``.
        num_classes: classes of the task.
        folder: ``<root>/vtab-1k/<folder>`` (VTAB, embedded) or ``<root>/<folder>`` (FGVC).
        group: VTAB group (``natural``, ``specialized``, ``structured``); required for VTAB and
            embedded tasks, ``None`` for FGVC.
        image_dir: FGVC: folder (below ``folder``) that the json paths are relative to.
        display_name: the name papers print.
    """

    name: str
    suite: str
    num_classes: int
    folder: str
    group: str | None = None
    image_dir: str = ""
    display_name: str = ""

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ConfigError(f"dataset.suite={self.suite!r}; valid choices: {', '.join(SUITES)}")
        if not self.name or not self.folder:
            raise ConfigError(
                f"dataset.name and dataset.folder must be non-empty (got name={self.name!r}, folder={self.folder!r}); "
                "pick a dataset with dataset=<suite>/<name> from configs/dataset/"
            )
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, int)
            or self.num_classes < 2
        ):
            raise ConfigError(f"dataset.num_classes must be an integer >= 2, got {self.num_classes!r}")
        if self.suite == "fgvc":
            if self.group is not None:
                raise ConfigError(
                    f"dataset.group={self.group!r}: FGVC datasets have no VTAB group; set it to null"
                )
        elif self.group not in GROUPS:
            raise ConfigError(
                f"dataset.group={self.group!r} for the {self.suite} task {self.name!r}; "
                f"valid choices: {', '.join(GROUPS)}"
            )


def make_dataset_config(options: Mapping[str, Any]) -> DatasetConfig:
    """Build a :class:`DatasetConfig` from a plain (or OmegaConf) mapping, e.g. the ``dataset:`` block.

    Unknown keys are rejected with the valid ones; an alias given as ``name`` (``cifar100`` in the
    ``vtab`` suite) is replaced by its canonical name so results never split over two names.

    Args:
        options: the fields of :class:`DatasetConfig`.

    Returns:
        The typed, validated config.
    """
    from peftbench.config import build_config

    cfg = build_config(DatasetConfig, options, "dataset")
    canonical = canonical_option(f"{cfg.suite}/{cfg.name}").partition("/")[2]
    return dataclasses.replace(cfg, name=canonical) if canonical != cfg.name else cfg


@dataclasses.dataclass
class DataConfig:
    """The ``data:`` block: where data lives and the preprocessing choices (all recorded)."""

    root: str = "data"
    normalize: str = "backbone"
    interpolation: str = "bicubic"
    image_size: int = 224
    num_workers: int = 0
    # training-split augmentation: none (VTAB-1k's protocol) | randaugment (timm RandAugment + horizontal flip)
    augment: str = "none"
    randaugment: str = "rand-m9-mstd0.5-inc1"  # timm's RandAugment config string (data.augment=randaugment)
    # FGVC, protocol=final: train the final model on train+val (train_val) or on train.json only (train: VPT)
    fgvc_final_train: str = "train_val"

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:
            raise ConfigError(f"data.augment={self.augment!r}; valid choices: {', '.join(AUGMENTS)}")
        if not str(self.randaugment).startswith("rand"):
            raise ConfigError(
                f"data.randaugment={self.randaugment!r} is not a timm RandAugment string; it starts with 'rand', "
                "e.g. rand-m9-mstd0.5-inc1"
            )
        if self.fgvc_final_train not in FGVC_FINAL_TRAIN:
            raise ConfigError(
                f"data.fgvc_final_train={self.fgvc_final_train!r}; valid choices: {', '.join(FGVC_FINAL_TRAIN)}"
            )
        if self.normalize not in NORMALIZE:
            raise ConfigError(f"data.normalize={self.normalize!r}; valid choices: {', '.join(NORMALIZE)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"data.interpolation={self.interpolation!r}; valid choices: {', '.join(INTERPOLATIONS)}"
            )
        if self.image_size < 1 or self.num_workers < 0:
            raise ConfigError(
                f"data.image_size must be >= 1 and data.num_workers >= 0 "
                f"(got image_size={self.image_size}, num_workers={self.num_workers})"
            )
