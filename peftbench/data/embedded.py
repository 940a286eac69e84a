"""Embedded offline tasks, generated deterministically and written in the VTAB-1k layout.

They need no download and no internet, so the default run works anywhere; the real VTAB-1k reader
is what reads them back.

``dsprites_loc``: a small proxy of VTAB's dSprites location task built from dSprites' own latent
definition (Matthey et al., 2017): a white shape (square, ellipse, heart) at one of 6 scales
(0.5 to 1), 40 orientations (0 to 2*pi), 32 x and 32 y positions on a black 64x64 canvas; the label is
the x-position index // 2 (16 classes), as VTAB defines it. Each shape is centred on its area
centroid, so the centroid of the white pixels lies at the position. Splits: train800 (800), val200
(200), train800val200 (their union, 1000) and test (500 images, fewer than VTAB's to keep CPU
evaluation quick). Images are PNG (lossless); ``factors.csv`` records every image's latent indices.

Generation is idempotent (a marker file holding the generator version is written last and checked
first), redone after an interruption (everything is written into a private temporary folder that is
renamed into place), and safe when several runs of a sweep start at once (the first complete copy
wins; the others discard theirs).

To add a task, write a function ``(n, rng) -> list[Sample]`` and register it in :data:`GENERATORS`.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from peftbench.errors import DataError, UnknownNameError

GENERATOR_VERSION = "2"
MARKER = ".peftbench-embedded"
FACTORS_FILE = "factors.csv"
SPLIT_SIZES = {"train800": 800, "val200": 200, "test": 500}
SEED = 0

# dSprites' latent grid (Matthey et al., 2017)
CANVAS = 64
SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * math.pi, 40)
POSITIONS = 32
MARGIN = 12.0  # pixels between the canvas edge and the outermost positions: no shape is clipped
STEP = (CANVAS - 1 - 2 * MARGIN) / (POSITIONS - 1)  # pixels between neighbouring positions
RADIUS = 7.5  # half-size of a shape at scale 1, in pixels (a 45-degree square reaches 10.6 < MARGIN)


class Sample(NamedTuple):
    """One generated image, its label and the latent factor indices it was drawn from."""

    image: Image.Image
    label: int
    factors: dict[str, int]


def position_px(index: int) -> float:
    """Pixel coordinate of the centre of a shape at position ``index`` (0..31), on either axis."""
    return MARGIN + index * STEP


def _centred(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The polygon moved so that its area centroid is at the origin (shoelace formula)."""
    area = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
        cross = x0 * y1 - x1 * y0
        area += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    cx, cy = cx / (3 * area), cy / (3 * area)
    return [(x - cx, y - cy) for x, y in points]


def _outline(shape: str, scale: float) -> list[tuple[float, float]]:
    """Unrotated polygon of a dSprites shape at ``scale``, centred on its centroid, in pixels."""
    r = RADIUS * scale
    if shape == "square":
        return [(-r, -r), (r, -r), (r, r), (-r, r)]
    ts = np.linspace(0, 2 * math.pi, 60, endpoint=False)
    if shape == "ellipse":
        return [(r * math.cos(t), 0.6 * r * math.sin(t)) for t in ts]
    # heart curve (x in [-16, 16]), scaled to the same half-width; image y grows downwards
    pts = [
        (
            16 * math.sin(t) ** 3,
            -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)),
        )
        for t in ts
    ]
    return _centred([(x * r / 16, y * r / 16) for x, y in pts])


def render_sprite(shape: str, scale: float, angle: float, x: float, y: float) -> Image.Image:
    """A binary 64x64 image (mode ``L``, 0 or 255) of one shape rotated by ``angle`` and centred at (x, y)."""
    c, s = math.cos(angle), math.sin(angle)
    poly = [(x + px * c - py * s, y + px * s + py * c) for px, py in _outline(shape, scale)]
    img = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(img).polygon(poly, fill=255)
    return img


def dsprites_loc(n: int, rng: np.random.Generator) -> list[Sample]:
    """``n`` dSprites-location samples: label = x-position index // 2 (16 classes), as in VTAB.

    Args:
        n: number of samples.
        rng: the generator all latents are drawn from (uniformly and independently).

    Returns:
        The samples, in drawing order.
    """
    out = []
    for _ in range(n):
        factors = {
            "shape": int(rng.integers(len(SHAPES))),
            "scale": int(rng.integers(len(SCALES))),
            "orientation": int(rng.integers(len(ORIENTATIONS))),
            "pos_x": int(rng.integers(POSITIONS)),
            "pos_y": int(rng.integers(POSITIONS)),
        }
        img = render_sprite(
            SHAPES[factors["shape"]],
            float(SCALES[factors["scale"]]),
            float(ORIENTATIONS[factors["orientation"]]),
            position_px(factors["pos_x"]),
            position_px(factors["pos_y"]),
        )
        out.append(Sample(img, factors["pos_x"] // 2, factors))
    return out


GENERATORS: dict[str, Callable[[int, np.random.Generator], list[Sample]]] = {
    "dsprites_loc": dsprites_loc,
}


def is_complete(task_dir: Path) -> bool:
    """Whether ``task_dir`` holds a finished generation of the current generator version."""
    marker = task_dir / MARKER
    return marker.is_file() and marker.read_text().strip() == GENERATOR_VERSION


def ensure_embedded(task: str, task_dir: Path, seed: int = SEED) -> Path:
    """Generate ``task`` into ``task_dir`` in the VTAB-1k layout unless a complete copy is there.

    Args:
        task: a key of :data:`GENERATORS` (the dataset config's ``name``).
        task_dir: ``<data.root>/vtab-1k/<folder>``.
        seed: seed of the latent draws; the default gives the published task.

    Returns:
        ``task_dir``, now holding ``images/``, the four list files, ``factors.csv`` and the marker.
    """
    if is_complete(task_dir):
        return task_dir
    if task not in GENERATORS:
        raise UnknownNameError("embedded task", task, GENERATORS, hint="add its generator to GENERATORS")
    try:
        task_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{task_dir.name}.", suffix=".tmp", dir=task_dir.parent))
    except OSError as exc:
        raise DataError(
            f"cannot create the embedded task {task!r} below {task_dir.parent} ({exc}); "
            "pass a writable data.root=DIR"
        ) from None
    try:
        _write(task, tmp, seed)
        if is_complete(task_dir):  # another run finished first: keep its copy
            return task_dir
        if task_dir.exists():  # an interrupted or older generation
            shutil.rmtree(task_dir)
        try:
            tmp.rename(task_dir)
        except OSError:
            if not is_complete(task_dir):  # not a lost race with a concurrent run
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return task_dir


def _write(task: str, folder: Path, seed: int) -> None:
    """Write every split of ``task`` into ``folder``; the marker goes last."""
    (folder / "images").mkdir()
    samples = GENERATORS[task](sum(SPLIT_SIZES.values()), np.random.default_rng(seed))
    lines: dict[str, list[str]] = {}
    factor_rows = []
    start = 0
    for split, size in SPLIT_SIZES.items():
        lines[split] = []
        for i, sample in enumerate(samples[start : start + size]):
            rel = f"images/{split}_{i:04d}.png"
            sample.image.save(folder / rel, format="PNG")
            lines[split].append(f"{rel} {sample.label}")
            if not factor_rows:
                factor_rows.append(",".join(["path", "label", *sample.factors]))
            factor_rows.append(",".join([rel, str(sample.label), *map(str, sample.factors.values())]))
        start += size
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (folder / f"{split}.txt").write_text("\n".join(rows) + "\n")
    (folder / FACTORS_FILE).write_text("\n".join(factor_rows) + "\n")
    (folder / MARKER).write_text(GENERATOR_VERSION + "\n")
