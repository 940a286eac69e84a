"""The embedded offline task: generated on first use, deterministic, idempotent, read by the VTAB reader."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from peftbench.data import DataConfig, DatasetConfig, build_splits
from peftbench.data import embedded as emb
from peftbench.errors import DataError, UnknownNameError

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
SIZES = {"train800": 800, "val200": 200, "train800val200": 1000, "test": 500}


def _tree_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return emb.ensure_embedded("dsprites_loc", tmp_path_factory.mktemp("emb") / "dsprites_loc")


def test_generation_is_deterministic_with_the_documented_sizes(generated, tmp_path):
    again = emb.ensure_embedded("dsprites_loc", tmp_path / "dsprites_loc")
    assert _tree_digest(again) == _tree_digest(generated)  # same bytes, every file
    for split, n in SIZES.items():
        assert len((generated / f"{split}.txt").read_text().splitlines()) == n
    assert len(list((generated / "images").iterdir())) == 1500
    union = (generated / "train800.txt").read_text() + (generated / "val200.txt").read_text()
    assert (generated / "train800val200.txt").read_text() == union
    other = emb.ensure_embedded("dsprites_loc", tmp_path / "seed1", seed=1)
    assert (other / "test.txt").read_text() != (generated / "test.txt").read_text()


def test_labels_follow_the_dsprites_x_position_rule(generated):
    rows = [line.split(",") for line in (generated / emb.FACTORS_FILE).read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert header == ["path", "label", "shape", "scale", "orientation", "pos_x", "pos_y"]
    assert len(rows) == 1500
    listed = {}
    for split in ("train800", "val200", "test"):
        for line in (generated / f"{split}.txt").read_text().splitlines():
            rel, label = line.split()
            listed[rel] = int(label)
    labels = []
    for i, (rel, label, shape, scale, orientation, x, y) in enumerate(rows):
        assert listed[rel] == int(label) == int(x) // 2
        assert 0 <= int(shape) < 3 and 0 <= int(scale) < 6 and 0 <= int(orientation) < 40 and 0 <= int(y) < 32
        labels.append(int(label))
        if i % 10 == 0:  # the pixels agree with the factors: the shape's centroid sits at its x position
            pixels = np.asarray(Image.open(generated / rel))
            assert pixels.shape == (64, 64) and set(np.unique(pixels)) == {0, 255}
            cols = np.nonzero(pixels)[1]
            estimate = (cols.mean() - emb.MARGIN) / emb.STEP
            assert abs(estimate - int(x)) <= 1.0
    assert set(labels) == set(range(16))


def test_build_splits_generates_the_task_and_reads_it_like_vtab(tmp_path):
    cfg = DatasetConfig(
        name="dsprites_loc",
        suite="embedded",
        num_classes=16,
        folder="embedded_dsprites_loc",
        group="structured",
    )
    data = DataConfig(root=str(tmp_path / "fresh"), image_size=32)
    final = build_splits(cfg, data, "final", MEAN, STD)
    assert (final.train_split, final.eval_split, len(final.train), len(final.eval)) == (
        "train800val200",
        "test",
        1000,
        500,
    )
    assert emb.is_complete(tmp_path / "fresh" / "vtab-1k" / "embedded_dsprites_loc")
    image, label = final.eval[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 16
    tune = build_splits(cfg, data, "tune", MEAN, STD)
    assert (len(tune.train), len(tune.eval)) == (800, 200)
    assert build_splits(cfg, data, "final", MEAN, STD).manifest_sha256 == final.manifest_sha256


def test_complete_copies_are_kept_and_interrupted_ones_redone(tmp_path):
    task = emb.ensure_embedded("dsprites_loc", tmp_path / "t")
    mtime = (task / "test.txt").stat().st_mtime_ns
    emb.ensure_embedded("dsprites_loc", task)
    assert (task / "test.txt").stat().st_mtime_ns == mtime  # idempotent: nothing rewritten
    digest = _tree_digest(task)
    # an interrupted run: the marker is missing and a file is half written
    (task / emb.MARKER).unlink()
    (task / "images" / "test_0003.png").write_bytes(b"\x89PNG")
    emb.ensure_embedded("dsprites_loc", task)
    assert _tree_digest(task) == digest
    # an older generator version is regenerated
    (task / emb.MARKER).write_text("0\n")
    emb.ensure_embedded("dsprites_loc", task)
    assert (task / emb.MARKER).read_text().strip() == emb.GENERATOR_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no temporary folders left behind


def test_concurrent_first_use_ends_with_one_complete_copy(tmp_path):
    task, errors = tmp_path / "t", []

    def run() -> None:
        try:
            emb.ensure_embedded("dsprites_loc", task)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert emb.is_complete(task) and len((task / "test.txt").read_text().splitlines()) == 500
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_bad_embedded_requests(tmp_path):
    with pytest.raises(
        UnknownNameError,
        match="unknown embedded task 'shapes_rot'; valid choices: clevr_count, clevr_dist, digits, dsprites_loc",
    ):
        emb.ensure_embedded("shapes_rot", tmp_path / "x")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(DataError, match=r"cannot create the embedded task .*a_file.*writable data\.root=DIR"):
        emb.ensure_embedded("dsprites_loc", blocker / "vtab-1k" / "t")
