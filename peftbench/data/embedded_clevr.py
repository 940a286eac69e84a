"""CLEVR-like proxies: object count and closest-object distance, with VTAB's class definitions.

A scene follows CLEVR's generator (Johnson et al., 2017) in kind: 3 to 10 objects (uniform), each a
sphere, cube or cylinder, large (0.7) or small (0.35), in one of CLEVR's eight colour names, resting on a
ground plane at a uniform position in [-3, 3]^2 with at least 0.25 between neighbouring objects; the
camera looks at the scene centre from about 11 units away, jittered by up to 0.5 on every axis. The
renderer is a small painter's-algorithm rasteriser (flat-shaded faces, a highlight on spheres), not
Blender: shapes, sizes, occlusion and perspective match in kind, materials and shadows do not.

Labels are VTAB's (Zhai et al., 2019; its ``clevr`` task definitions):

* ``clevr_count``: number of objects - 3 (8 classes);
* ``clevr_dist``: the depth (distance along the camera axis, CLEVR's ``pixel_coords[2]``) of the
  closest object, binned by the thresholds ``[0, 8, 8.5, 9, 9.5, 10, 100]`` (6 classes). The target bin
  is drawn uniformly and scenes are redrawn until they fall in it, so every class is equally frequent
  (VTAB keeps CLEVR's natural, unbalanced frequencies).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from peftbench.data.embedded_common import Sample, iid

CANVAS = 64
FOV = math.radians(40.0)
FOCAL = (CANVAS / 2) / math.tan(FOV / 2)  # pixels
CAMERA = np.array([7.5, -6.5, 5.3])  # about 11 units from the origin, about 28 degrees above the ground
JITTER = 0.5
SHAPES = ("sphere", "cube", "cylinder")
SIZES = {"large": 0.7, "small": 0.35}
COLOURS = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
MIN_GAP = 0.25
MIN_OBJECTS, MAX_OBJECTS = 3, 10
DIST_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
LIGHT = np.array([-0.4, -0.6, 0.7]) / np.linalg.norm([-0.4, -0.6, 0.7])


def count_label(n_objects: int) -> int:
    """VTAB's CLEVR-count class: number of objects - 3."""
    return n_objects - MIN_OBJECTS


def distance_label(closest_depth: float) -> int:
    """VTAB's CLEVR-distance class: the bin of ``[0, 8, 8.5, 9, 9.5, 10, 100]`` holding the depth."""
    for k in range(len(DIST_THRESHOLDS) - 1):
        if DIST_THRESHOLDS[k] <= closest_depth < DIST_THRESHOLDS[k + 1]:
            return k
    raise ValueError(f"closest-object depth {closest_depth} is outside VTAB's bins {DIST_THRESHOLDS}")


class Camera:
    """A pinhole camera at ``position`` looking at the origin, z up."""

    def __init__(self, position: np.ndarray) -> None:
        self.position = position
        self.forward = -position / np.linalg.norm(position)
        right = np.cross(self.forward, [0.0, 0.0, 1.0])
        self.right = right / np.linalg.norm(right)
        self.up = np.cross(self.right, self.forward)

    def depth(self, point: np.ndarray) -> float:
        """Distance of ``point`` along the optical axis."""
        return float((point - self.position) @ self.forward)

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Pixel (x, y) of a world point (y grows downwards)."""
        v = point - self.position
        z = v @ self.forward
        return CANVAS / 2 + FOCAL * (v @ self.right) / z, CANVAS / 2 - FOCAL * (v @ self.up) / z


def _scene(rng: np.random.Generator, n: int) -> tuple[Camera, list[dict]]:
    """Camera and ``n`` non-overlapping objects whose centres project inside the image."""
    while True:
        camera = Camera(CAMERA + rng.uniform(-JITTER, JITTER, size=3))
        objects: list[dict] = []
        for _ in range(n):
            size = str(rng.choice(list(SIZES)))
            shape = str(rng.choice(SHAPES))
            r = SIZES[size] / math.sqrt(2) if shape == "cube" else SIZES[size]  # CLEVR shrinks cubes by sqrt 2
            for _ in range(100):
                centre = np.array([*rng.uniform(-3.0, 3.0, size=2), r])
                px, py = camera.project(centre)
                inside = 3 <= px <= CANVAS - 4 and 3 <= py <= CANVAS - 4
                apart = all(
                    np.linalg.norm(centre[:2] - o["centre"][:2]) - r - o["r"] >= MIN_GAP for o in objects
                )
                if inside and apart:
                    break
            else:
                break  # no room left: draw the scene again
            objects.append(
                {
                    "shape": shape,
                    "size": size,
                    "r": r,
                    "colour": str(rng.choice(list(COLOURS))),
                    "angle": float(rng.uniform(0, 2 * math.pi)),
                    "centre": centre,
                }
            )
        if len(objects) == n:
            return camera, objects


def _shade(colour: tuple[int, int, int], normal: np.ndarray) -> tuple[int, int, int]:
    light = 0.45 + 0.55 * max(0.0, float(normal @ LIGHT))
    return tuple(min(255, int(c * light)) for c in colour)


def _draw_prism(draw: ImageDraw.ImageDraw, camera: Camera, obj: dict, sides: int) -> None:
    """A cube (4 sides) or a cylinder (many sides): visible faces, far to near."""
    c, r = obj["centre"], obj["r"]
    radius = r * math.sqrt(2) if sides == 4 else r
    angles = obj["angle"] + 2 * math.pi * np.arange(sides) / sides
    ring = np.stack([c[0] + radius * np.cos(angles), c[1] + radius * np.sin(angles)], axis=1)
    top = [np.array([x, y, c[2] + r]) for x, y in ring]
    bottom = [np.array([x, y, c[2] - r]) for x, y in ring]
    faces = [(top, np.array([0.0, 0.0, 1.0]))]
    for i in range(sides):
        j = (i + 1) % sides
        quad = [bottom[i], bottom[j], top[j], top[i]]
        mid = (ring[i] + ring[j]) / 2 - c[:2]
        faces.append((quad, np.array([*(mid / np.linalg.norm(mid)), 0.0])))
    visible = [(f, n) for f, n in faces if n @ (camera.position - np.mean(f, axis=0)) > 0]
    visible.sort(key=lambda fn: -camera.depth(np.mean(fn[0], axis=0)))
    for face, normal in visible:
        draw.polygon([camera.project(p) for p in face], fill=_shade(COLOURS[obj["colour"]], normal))


def _draw_sphere(draw: ImageDraw.ImageDraw, camera: Camera, obj: dict) -> None:
    x, y = camera.project(obj["centre"])
    rad = FOCAL * obj["r"] / camera.depth(obj["centre"])
    base = COLOURS[obj["colour"]]
    draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=_shade(base, -camera.forward))
    hl = rad * 0.45
    hx, hy = x - rad * 0.3, y - rad * 0.3
    draw.ellipse([hx - hl, hy - hl, hx + hl, hy + hl], fill=tuple(min(255, int(v * 1.25) + 20) for v in base))


def render_scene(camera: Camera, objects: list[dict]) -> Image.Image:
    """RGB 64x64 image of the scene: grey ground, objects painted far to near."""
    img = Image.new("RGB", (CANVAS, CANVAS), (128, 128, 124))
    draw = ImageDraw.Draw(img)
    for row in range(CANVAS):  # the ground darkens towards the horizon
        g = int(140 - 30 * (1 - row / CANVAS))
        draw.line([(0, row), (CANVAS - 1, row)], fill=(g, g, g - 4))
    for obj in sorted(objects, key=lambda o: -camera.depth(o["centre"])):
        if obj["shape"] == "sphere":
            _draw_sphere(draw, camera, obj)
        else:
            _draw_prism(draw, camera, obj, 4 if obj["shape"] == "cube" else 16)
    return img


def closest_depth(camera: Camera, objects: list[dict]) -> float:
    """Depth of the closest object's centre."""
    return min(camera.depth(o["centre"]) for o in objects)


def _factors(camera: Camera, objects: list[dict]) -> dict[str, int | float | str]:
    return {
        "n_objects": len(objects),
        "closest_depth": round(closest_depth(camera, objects), 4),
        "shapes": "|".join(o["shape"] for o in objects),
    }


def _count(rng: np.random.Generator) -> Sample:
    """CLEVR count: label = number of objects - 3 (8 classes), as in VTAB."""
    n = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    camera, objects = _scene(rng, n)
    return Sample(render_scene(camera, objects), count_label(n), _factors(camera, objects))


def _distance(rng: np.random.Generator) -> Sample:
    """CLEVR distance: label = VTAB's bin of the closest object's depth (6 classes), bins drawn uniformly."""
    target = int(rng.integers(len(DIST_THRESHOLDS) - 1))
    while True:
        camera, objects = _scene(rng, int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1)))
        depth = closest_depth(camera, objects)
        if distance_label(depth) == target:
            return Sample(render_scene(camera, objects), target, _factors(camera, objects))


clevr_count = iid(_count)
clevr_dist = iid(_distance)
