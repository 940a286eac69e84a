"""dSprites proxies: location and orientation, from dSprites' own latent definition.

dSprites (Matthey et al., 2017) is 3 shapes (square, ellipse, heart) x 6 scales (0.5 to 1) x 40
orientations (0 to 2*pi, both ends included) x 32 x-positions x 32 y-positions of one white shape on a
black 64x64 canvas. Each sample here draws the five latent indices uniformly and renders the shape as a
polygon; each shape is centred on its area centroid, so the centroid of the white pixels lies at the
position. The labels are VTAB's (Zhai et al., 2019; its ``dsprites`` task definitions):

* ``dsprites_loc``: x-position index // 2 (16 classes);
* ``dsprites_ori``: floor(orientation index / 2.5), i.e. 40 orientations binned into 16 classes.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from peftbench.data.embedded_common import Sample, iid

CANVAS = 64
SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * math.pi, 40)
POSITIONS = 32
MARGIN = 12.0  # pixels between the canvas edge and the outermost positions: no shape is clipped
STEP = (CANVAS - 1 - 2 * MARGIN) / (POSITIONS - 1)  # pixels between neighbouring positions
RADIUS = 7.5  # half-size of a shape at scale 1, in pixels (a 45-degree square reaches 10.6 < MARGIN)
NUM_CLASSES = 16


def position_px(index: int) -> float:
    """Pixel coordinate of the centre of a shape at position ``index`` (0..31), on either axis."""
    return MARGIN + index * STEP


def location_label(pos_x: int) -> int:
    """VTAB's dSprites-location class of an x-position index (0..31): ``pos_x // 2``."""
    return pos_x // 2


def orientation_label(orientation: int) -> int:
    """VTAB's dSprites-orientation class of an orientation index (0..39): ``floor(index / 2.5)``."""
    return (2 * orientation) // 5


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


def draw_latents(rng: np.random.Generator) -> dict[str, int]:
    """The five latent indices, each uniform and independent."""
    return {
        "shape": int(rng.integers(len(SHAPES))),
        "scale": int(rng.integers(len(SCALES))),
        "orientation": int(rng.integers(len(ORIENTATIONS))),
        "pos_x": int(rng.integers(POSITIONS)),
        "pos_y": int(rng.integers(POSITIONS)),
    }


def render_latents(factors: dict[str, int]) -> Image.Image:
    """The image of a latent-index dict as :func:`draw_latents` returns it."""
    return render_sprite(
        SHAPES[factors["shape"]],
        float(SCALES[factors["scale"]]),
        float(ORIENTATIONS[factors["orientation"]]),
        position_px(factors["pos_x"]),
        position_px(factors["pos_y"]),
    )


def _location(rng: np.random.Generator) -> Sample:
    """dSprites location: label = x-position index // 2 (16 classes), as in VTAB."""
    factors = draw_latents(rng)
    return Sample(render_latents(factors), location_label(factors["pos_x"]), dict(factors))


def _orientation(rng: np.random.Generator) -> Sample:
    """dSprites orientation: label = floor(orientation index / 2.5) (16 classes), as in VTAB."""
    factors = draw_latents(rng)
    return Sample(render_latents(factors), orientation_label(factors["orientation"]), dict(factors))


dsprites_loc = iid(_location)
dsprites_ori = iid(_orientation)
