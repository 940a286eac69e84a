"""Task order and groups of the suites, as the published tables print them.

A test checks these lists against ``configs/dataset/`` (names, groups), so they cannot drift.
"""

from __future__ import annotations

VTAB_GROUPS: dict[str, tuple[str, ...]] = {
    "natural": ("cifar", "caltech101", "dtd", "oxford_flowers102", "oxford_iiit_pet", "svhn", "sun397"),
    "specialized": ("patch_camelyon", "eurosat", "resisc45", "diabetic_retinopathy"),
    "structured": (
        "clevr_count", "clevr_dist", "dmlab", "kitti", "dsprites_loc", "dsprites_ori", "smallnorb_azi", "smallnorb_ele",
    ),
}
VTAB_TASKS: tuple[str, ...] = tuple(t for group in VTAB_GROUPS.values() for t in group)
FGVC_TASKS: tuple[str, ...] = ("cub", "nabirds", "oxford_flowers", "stanford_dogs", "stanford_cars")
