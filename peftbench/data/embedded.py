"""Embedded offline tasks, generated deterministically and written in the VTAB-1k layout.

``dsprites_loc``: a small proxy of VTAB's dSprites location task built from dSprites' own latent
definition (Matthey et al., 2017): a white shape (square, ellipse, heart) at one of 6 scales
(0.5 to 1), 40 orientations (0 to 2*pi), 32 x and 32 y positions on a black 64x64 canvas; the label is
the x-position index // 2 (16 classes), as VTAB defines it. Splits: train800 (800), val200 (200),
train800val200 (their union, 1000) and test (500 images, fewer than VTAB's to keep CPU evaluation
quick). Images are PNG (lossless). A marker file with the generator version makes generation
idempotent; it is written last, into a temporary folder renamed into place, so an interrupted
generation is redone.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

GENERATOR_VERSION = "1"
MARKER = ".peftbench-embedded"
SPLIT_SIZES = {"train800": 800, "val200": 200, "test": 500}
CANVAS = 64


def _shape_outline(shape: int, scale: float, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    """Polygon of a dSprites shape (0 square, 1 ellipse, 2 heart), rotated and placed, in pixels."""
    r = 10.0 * scale  # half-size in pixels at scale 1: about a third of the canvas
    if shape == 0:
        pts = [(-r, -r), (r, -r), (r, r), (-r, r)]
    elif shape == 1:
        pts = [(r * math.cos(t), 0.6 * r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 40, endpoint=False)]
    else:  # heart curve, scaled to the same extent
        pts = []
        for t in np.linspace(0, 2 * math.pi, 60, endpoint=False):
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x * r / 16, y * r / 16))
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _dsprites_loc(n: int, rng: np.random.Generator) -> list[tuple[Image.Image, int]]:
    out = []
    for _ in range(n):
        shape = int(rng.integers(3))
        scale = float(np.linspace(0.5, 1.0, 6)[rng.integers(6)])
        angle = float(np.linspace(0, 2 * math.pi, 40)[rng.integers(40)])
        xi, yi = int(rng.integers(32)), int(rng.integers(32))
        margin = 12.0
        step = (CANVAS - 2 * margin) / 31
        img = Image.new("L", (CANVAS, CANVAS), 0)
        ImageDraw.Draw(img).polygon(_shape_outline(shape, scale, angle, margin + xi * step, margin + yi * step), fill=255)
        out.append((img, xi // 2))
    return out


GENERATORS: dict[str, Callable[[int, np.random.Generator], list[tuple[Image.Image, int]]]] = {
    "dsprites_loc": _dsprites_loc,
}


def is_complete(task_dir: Path) -> bool:
    """Whether ``task_dir`` holds a finished generation of the current version."""
    marker = task_dir / MARKER
    return marker.is_file() and marker.read_text().strip() == GENERATOR_VERSION


def ensure_embedded(task: str, task_dir: Path, seed: int = 0) -> Path:
    """Generate ``task`` into ``task_dir`` unless a complete copy is there; return ``task_dir``."""
    if is_complete(task_dir):
        return task_dir
    if task not in GENERATORS:
        from peftbench.errors import UnknownNameError

        raise UnknownNameError("embedded task", task, GENERATORS)
    tmp = task_dir.with_name(task_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    samples = GENERATORS[task](sum(SPLIT_SIZES.values()), rng)
    lines: dict[str, list[str]] = {}
    start = 0
    for split, size in SPLIT_SIZES.items():
        lines[split] = []
        for i, (img, label) in enumerate(samples[start : start + size]):
            rel = f"images/{split}_{i:04d}.png"
            img.save(tmp / rel, format="PNG")
            lines[split].append(f"{rel} {label}")
        start += size
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (tmp / f"{split}.txt").write_text("\n".join(rows) + "\n")
    (tmp / MARKER).write_text(GENERATOR_VERSION + "\n")
    shutil.rmtree(task_dir, ignore_errors=True)
    task_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(task_dir)
    return task_dir
