"""Readers of two original downloads that torchvision has no class for, in torchvision's style
(``root`` folder, ``split``, ``__getitem__ -> (PIL image, label)``), so the VTAB builder treats them
like the torchvision datasets: CLEVR with the closest-object-distance label, and dSprites.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CLEVR_DIST_BINS = [0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0]
DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"


def closest_bin(values: np.ndarray, thresholds: list[float]) -> int:
    """VTAB's distance binning: the largest ``i`` with ``thresholds[i] < min(values)``."""
    dist = float(np.min(values))
    return int(np.max(np.nonzero(np.asarray(thresholds) < dist)[0]))


class ClevrDistance:
    """CLEVR v1.0 images labelled by the depth of the closest object (VTAB's clevr_dist, 6 bins).

    Layout as torchvision's CLEVRClassification: ``<root>/clevr/CLEVR_v1.0/images/<split>/*.png`` and
    ``scenes/CLEVR_<split>_scenes.json``; the depth is the third entry of each object's
    ``pixel_coords``, as in the TFDS features VTAB reads.
    """

    def __init__(self, root: str, split: str = "train", download: bool = False) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r}; valid choices: train, val (the test scenes have no objects)")
        if download:
            raise ValueError("ClevrDistance reads local files only; download CLEVR_v1.0.zip yourself")
        base = Path(root) / "clevr" / "CLEVR_v1.0"
        scenes_file = base / "scenes" / f"CLEVR_{split}_scenes.json"
        if not scenes_file.is_file():
            raise RuntimeError(f"{scenes_file} not found")
        scenes = json.loads(scenes_file.read_text())["scenes"]
        depth = {s["image_filename"]: [o["pixel_coords"][2] for o in s["objects"]] for s in scenes}
        self._files = sorted((base / "images" / split).glob("*.png"))
        missing = [f.name for f in self._files if f.name not in depth]
        if missing:
            raise RuntimeError(f"{scenes_file} has no scene for {missing[0]} (and {len(missing) - 1} more)")
        self._labels = [closest_bin(np.asarray(depth[f.name]), CLEVR_DIST_BINS) for f in self._files]

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        with Image.open(self._files[index]) as img:
            return img.convert("RGB"), self._labels[index]


class Dsprites:
    """dSprites from the original ``.npz``: one split of 737,280 binary 64x64 images.

    ``label`` picks the latent: ``x_position`` (index 4, 32 values) or ``orientation`` (index 3, 40
    values); the VTAB binning is applied by the caller. The images array is loaded whole (about 3 GB).
    """

    LATENTS = {"orientation": 3, "x_position": 4}

    def __init__(self, root: str, label: str, download: bool = False) -> None:
        if download:
            raise ValueError("Dsprites reads local files only; download the .npz yourself")
        path = Path(root) / "dsprites" / DSPRITES_FILE
        if not path.is_file():
            raise RuntimeError(f"{path} not found")
        with np.load(path, allow_pickle=False) as npz:
            self._images = npz["imgs"]  # (N, 64, 64) uint8 in {0, 1}
            self._labels = npz["latents_classes"][:, self.LATENTS[label]]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray((self._images[index] * 255).astype(np.uint8)), int(self._labels[index])
