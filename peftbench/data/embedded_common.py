"""Shared pieces of the embedded task generators: the sample type, the split sizes, patch sampling.

A generator is a function ``(sizes, rng) -> {split: [Sample, ...]}`` over the splits of
:data:`SPLIT_SIZES`; :func:`iid` turns a per-sample procedural draw into one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from PIL import Image

from peftbench.errors import DataError

SPLIT_SIZES = {"train800": 800, "val200": 200, "test": 500}


class Sample(NamedTuple):
    """One generated image, its label and the latent factors (or source coordinates) it came from."""

    image: Image.Image
    label: int
    factors: dict[str, int | float | str]


Splits = dict[str, list[Sample]]
Generator = Callable[[dict[str, int], np.random.Generator], Splits]


def iid(draw: Callable[[np.random.Generator], Sample]) -> Generator:
    """A generator whose splits are consecutive independent draws (train800, then val200, then test)."""

    def generate(sizes: dict[str, int], rng: np.random.Generator) -> Splits:
        return {split: [draw(rng) for _ in range(n)] for split, n in sizes.items()}

    generate.__doc__ = draw.__doc__
    return generate


def require(module: str, package: str) -> object:
    """Import ``module`` or stop with a message naming the package that ships the task's images."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(
            f"this embedded task reads images that the {package!r} package ships; install it "
            f"(pip install {package}, or reinstall peftbench: pip install -e .)"
        ) from None


def crop_box(
    rng: np.random.Generator, shape: tuple[int, int], size: int, columns: tuple[float, float]
) -> tuple[int, int]:
    """Top-left (row, col) of a ``size`` x ``size`` crop inside the column band ``columns``.

    The band is a fraction range of the image width: training and test crops come from disjoint bands
    of each source image, so no test pixel is ever seen in training.
    """
    h, w = shape
    lo, hi = int(columns[0] * w), int(columns[1] * w) - size
    if hi < lo or size > h:
        raise ValueError(f"a {size}px crop does not fit columns {columns} of a {h}x{w} image")
    return int(rng.integers(0, h - size + 1)), int(rng.integers(lo, hi + 1))


def square_patch(
    array: np.ndarray, rng: np.random.Generator, size: int, columns: tuple[float, float], out: int
) -> tuple[Image.Image, dict[str, int | float | str]]:
    """A random crop of ``array`` (H, W) or (H, W, 3) uint8, randomly rotated by k*90 degrees and flipped,
    resized to ``out`` x ``out``; returns the image and where it came from."""
    row, col = crop_box(rng, array.shape[:2], size, columns)
    crop = array[row : row + size, col : col + size]
    k, flip = int(rng.integers(4)), int(rng.integers(2))
    crop = np.rot90(crop, k)
    if flip:
        crop = crop[:, ::-1]
    img = Image.fromarray(np.ascontiguousarray(crop)).resize((out, out), Image.Resampling.BILINEAR)
    return img, {"row": row, "col": col, "size": size, "rot90": k, "flip": flip}
