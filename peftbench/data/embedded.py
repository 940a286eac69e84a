"""Embedded offline tasks: a mini-suite generated deterministically and written in the VTAB-1k layout.

They need no download and no internet, so the default run works anywhere; the real VTAB-1k reader
is what reads them back. Eight tasks cover VTAB's three groups (smoke-scale proxies, **not** VTAB-1k):

=============  ============  =======  =====================================================================
task           group         classes  source and label
=============  ============  =======  =====================================================================
digits         natural       10       scikit-learn's bundled handwritten digits (UCI; CC BY 4.0)
textures       natural       3        scikit-image's brick / grass / gravel photographs (CC0)
histology      specialized   2        scikit-image's IHC slide: DAB-positive patch or not
modality       specialized   4        scikit-image's IHC / fundus / phase-microscopy / Hubble images
dsprites_loc   structured    16       procedural dSprites, x-position index // 2 (VTAB)
dsprites_ori   structured    16       procedural dSprites, floor(orientation index / 2.5) (VTAB)
clevr_count    structured    8        procedural CLEVR-like scenes, number of objects - 3 (VTAB)
clevr_dist     structured    6        procedural CLEVR-like scenes, closest-object depth bins (VTAB)
=============  ============  =======  =====================================================================

Details in :mod:`~peftbench.data.embedded_images`, :mod:`~peftbench.data.embedded_dsprites` and
:mod:`~peftbench.data.embedded_clevr`. Splits: train800 (800), val200 (200), train800val200 (their
union, 1000) and test (500 images, fewer than VTAB's to keep CPU evaluation quick). Images are PNG
(lossless); ``factors.csv`` records every image's latent factors or source coordinates.

Generation is idempotent (a marker file holding the generator version is written last and checked
first), redone after an interruption (everything is written into a private temporary folder that is
renamed into place), and safe when several runs of a sweep start at once (the first complete copy
wins; the others discard theirs).

To add a task, write a generator ``(sizes, rng) -> {split: [Sample, ...]}`` (see
:mod:`~peftbench.data.embedded_common`), register it in :data:`TASKS` and add
``configs/dataset/embedded/<task>.yaml``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from peftbench.data import embedded_clevr, embedded_dsprites, embedded_images
from peftbench.data.embedded_common import SPLIT_SIZES, Generator, Sample
from peftbench.data.embedded_dsprites import MARGIN, STEP, position_px, render_sprite
from peftbench.errors import DataError, UnknownNameError

__all__ = [
    "FACTORS_FILE",
    "GENERATORS",
    "MARGIN",
    "MARKER",
    "SPLIT_SIZES",
    "STEP",
    "TASKS",
    "Sample",
    "ensure_embedded",
    "is_complete",
    "position_px",
    "render_sprite",
]

GENERATOR_VERSION = "3"
MARKER = ".peftbench-embedded"
FACTORS_FILE = "factors.csv"
SEED = 0


class Task(NamedTuple):
    """A registered embedded task: its generator, class count and VTAB group."""

    generate: Generator
    num_classes: int
    group: str


TASKS: dict[str, Task] = {
    "digits": Task(embedded_images.digits, 10, "natural"),
    "textures": Task(embedded_images.textures, 3, "natural"),
    "histology": Task(embedded_images.histology, 2, "specialized"),
    "modality": Task(embedded_images.modality, 4, "specialized"),
    "dsprites_loc": Task(embedded_dsprites.dsprites_loc, 16, "structured"),
    "dsprites_ori": Task(embedded_dsprites.dsprites_ori, 16, "structured"),
    "clevr_count": Task(embedded_clevr.clevr_count, 8, "structured"),
    "clevr_dist": Task(embedded_clevr.clevr_dist, 6, "structured"),
}
GENERATORS: dict[str, Generator] = {name: task.generate for name, task in TASKS.items()}


def is_complete(task_dir: Path) -> bool:
    """Whether ``task_dir`` holds a finished generation of the current generator version."""
    marker = task_dir / MARKER
    return marker.is_file() and marker.read_text().strip() == GENERATOR_VERSION


def ensure_embedded(task: str, task_dir: Path, seed: int = SEED) -> Path:
    """Generate ``task`` into ``task_dir`` in the VTAB-1k layout unless a complete copy is there.

    Args:
        task: a key of :data:`TASKS` (the dataset config's ``name``).
        task_dir: ``<data.root>/vtab-1k/<folder>``.
        seed: seed of the draws; the default gives the published task.

    Returns:
        ``task_dir``, now holding ``images/``, the four list files, ``factors.csv`` and the marker.
    """
    if is_complete(task_dir):
        return task_dir
    if task not in TASKS:
        raise UnknownNameError("embedded task", task, TASKS, hint="add its generator to TASKS")
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
    splits = TASKS[task].generate(dict(SPLIT_SIZES), np.random.default_rng(seed))
    lines: dict[str, list[str]] = {}
    header: list[str] = []
    factor_rows: list[str] = []
    for split in SPLIT_SIZES:
        lines[split] = []
        for i, sample in enumerate(splits[split]):
            rel = f"images/{split}_{i:04d}.png"
            sample.image.save(folder / rel, format="PNG")
            lines[split].append(f"{rel} {sample.label}")
            header = header or ["path", "label", *sample.factors]
            factor_rows.append(",".join([rel, str(sample.label), *map(str, sample.factors.values())]))
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (folder / f"{split}.txt").write_text("\n".join(rows) + "\n")
    (folder / FACTORS_FILE).write_text("\n".join([",".join(header), *factor_rows]) + "\n")
    (folder / MARKER).write_text(GENERATOR_VERSION + "\n")
