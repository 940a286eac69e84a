"""Natural and specialized proxies from real images that installable packages ship inside their wheels.

No download is involved: the pixels come from files inside the installed packages.

* ``digits`` (natural, 10 classes; an SVHN-like digit task): scikit-learn's bundled copy of the UCI
  "Optical Recognition of Handwritten Digits" test set (1,797 8x8 images; CC BY 4.0; scikit-learn is
  BSD-3-Clause), upsampled to 32x32. The images are shuffled once and split into disjoint
  train800 / val200 / test (500; the remaining 297 are unused).
* ``textures`` (natural, 3 classes; a DTD-like texture task): scikit-image's brick, grass and gravel
  photographs (CC0; scikit-image is BSD-3-Clause).
* ``histology`` (specialized, 2 classes; a PatchCamelyon-like task): scikit-image's immunohistochemistry
  image of colonic glands (FHL2 revealed by DAB, hematoxylin counterstain; "no known copyright
  restrictions"). Label 1 when the patch's mean DAB optical density (colour deconvolution,
  ``skimage.color.rgb2hed``) is above the median over the training band, 0 otherwise; the class is
  drawn uniformly and crops are redrawn until they match.
* ``modality`` (specialized, 4 classes; which instrument took a grey-level patch): scikit-image's
  immunohistochemistry slide (bright-field histology), retina (fundus photograph, CC0), cell
  (quantitative phase microscopy, CC0) and Hubble deep field (space telescope, NASA, public domain).

Patches are random square crops (random size, rotation by a multiple of 90 degrees, flip) resized to
32x32. Training and validation crops come from the left 70% of every source image, test crops from the
right 30%, so no test pixel is ever seen in training.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from PIL import Image

from peftbench.data.embedded_common import Sample, Splits, require, square_patch

OUT = 32
TRAIN_COLUMNS = (0.0, 0.7)
TEST_COLUMNS = (0.7, 1.0)
TEXTURES = ("brick", "grass", "gravel")
MODALITIES = ("immunohistochemistry", "retina", "cell", "hubble_deep_field")
HISTOLOGY_CROP = 48
Draw = Callable[[str, int, np.random.Generator], tuple[Image.Image, dict]]


def _columns(split: str) -> tuple[float, float]:
    return TEST_COLUMNS if split == "test" else TRAIN_COLUMNS


@cache
def _skimage(name: str) -> np.ndarray:
    data = require("skimage.data", "scikit-image")
    return np.asarray(getattr(data, name)())


@cache
def _grey(name: str) -> np.ndarray:
    array = _skimage(name)
    if array.ndim == 2:
        return array
    return (array[..., :3].astype(np.float64) @ [0.299, 0.587, 0.114]).round().astype(np.uint8)


def digits(sizes: dict[str, int], rng: np.random.Generator) -> Splits:
    """Handwritten digits 0-9 (10 classes), disjoint images per split."""
    datasets = require("sklearn.datasets", "scikit-learn")
    bunch = datasets.load_digits()
    order = rng.permutation(len(bunch.target))
    out: Splits = {}
    start = 0
    for split, n in sizes.items():
        out[split] = []
        for index in order[start : start + n]:
            pixels = (bunch.images[index] * (255 / 16)).round().astype(np.uint8)  # values 0..16
            img = Image.fromarray(pixels).resize((OUT, OUT), Image.Resampling.BILINEAR)
            out[split].append(Sample(img, int(bunch.target[index]), {"source_index": int(index)}))
        start += n
    return out


def _by_class(sizes: dict[str, int], rng: np.random.Generator, num_classes: int, draw: Draw) -> Splits:
    """Uniform class, then ``draw(split, label, rng) -> (image, factors)`` for every sample."""
    out: Splits = {}
    for split, n in sizes.items():
        out[split] = []
        for _ in range(n):
            label = int(rng.integers(num_classes))
            img, factors = draw(split, label, rng)
            out[split].append(Sample(img, label, factors))
    return out


def textures(sizes: dict[str, int], rng: np.random.Generator) -> Splits:
    """Brick / grass / gravel patches (3 classes)."""

    def draw(split: str, label: int, rng: np.random.Generator):
        size = int(rng.integers(48, 129))
        img, factors = square_patch(_skimage(TEXTURES[label]), rng, size, _columns(split), OUT)
        return img, {"source": TEXTURES[label], **factors}

    return _by_class(sizes, rng, len(TEXTURES), draw)


def modality(sizes: dict[str, int], rng: np.random.Generator) -> Splits:
    """Grey-level patches labelled by the instrument that took the source image (4 classes)."""

    def draw(split: str, label: int, rng: np.random.Generator):
        source = _grey(MODALITIES[label])
        while True:
            size = int(rng.integers(48, 129))
            img, factors = square_patch(source, rng, size, _columns(split), OUT)
            # the fundus photograph sits in a black disc: skip crops of the empty corners
            if MODALITIES[label] != "retina" or np.asarray(img).mean() > 30:
                return img, {"source": MODALITIES[label], **factors}

    return _by_class(sizes, rng, len(MODALITIES), draw)


@cache
def _dab() -> tuple[np.ndarray, float]:
    """The DAB optical-density channel of the IHC image and the median patch mean over the training band."""
    color = require("skimage.color", "scikit-image")
    dab = color.rgb2hed(_skimage("immunohistochemistry"))[..., 2]
    h, w = dab.shape
    last = int(TRAIN_COLUMNS[1] * w) - HISTOLOGY_CROP
    means = [
        dab[r : r + HISTOLOGY_CROP, c : c + HISTOLOGY_CROP].mean()
        for r in range(0, h - HISTOLOGY_CROP + 1, 8)
        for c in range(0, last + 1, 8)
    ]
    return dab, float(np.median(means))


def histology_label(dab_mean: float, threshold: float) -> int:
    """1 (DAB-positive) when the patch's mean DAB density is above ``threshold``, else 0."""
    return int(dab_mean > threshold)


def histology(sizes: dict[str, int], rng: np.random.Generator) -> Splits:
    """IHC patches, DAB-positive or not (2 classes)."""
    rgb = _skimage("immunohistochemistry")
    dab, threshold = _dab()

    def draw(split: str, label: int, rng: np.random.Generator):
        while True:
            img, factors = square_patch(rgb, rng, HISTOLOGY_CROP, _columns(split), OUT)
            r, c = factors["row"], factors["col"]
            mean = float(dab[r : r + HISTOLOGY_CROP, c : c + HISTOLOGY_CROP].mean())
            if histology_label(mean, threshold) == label:
                return img, {**factors, "dab_mean": round(mean, 5), "threshold": round(threshold, 5)}

    return _by_class(sizes, rng, 2, draw)
