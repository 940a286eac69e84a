"""The embedded mini-suite: registry == configs, deterministic generators, VTAB's class definitions,
disjoint train / test sources, and the real VTAB-1k reader on written tasks of every group."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from peftbench.data import DataConfig, DatasetConfig, build_splits
from peftbench.data import embedded as emb
from peftbench.data import embedded_clevr as clevr
from peftbench.data import embedded_dsprites as dspr
from peftbench.data import embedded_images as images

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "dataset" / "embedded"
SMALL = {"train800": 24, "val200": 6, "test": 12}
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _digest(splits) -> list[tuple[str, int, bytes]]:
    return [(s, x.label, x.image.tobytes()) for s, xs in splits.items() for x in xs]


def test_registry_and_configs_agree_and_span_the_three_groups():
    yamls = {p.stem: OmegaConf.to_container(OmegaConf.load(p)) for p in CONFIGS.glob("*.yaml")}
    assert set(yamls) == set(emb.TASKS)
    for name, cfg in yamls.items():
        task = emb.TASKS[name]
        assert (cfg["name"], cfg["suite"], cfg["num_classes"], cfg["group"]) == (
            name, "embedded", task.num_classes, task.group
        )
        assert cfg["folder"] == f"embedded_{name}"  # never the real VTAB folder under one data.root
    groups = [t.group for t in emb.TASKS.values()]
    assert {g: groups.count(g) for g in set(groups)} == {"natural": 2, "specialized": 2, "structured": 4}


@pytest.mark.parametrize("name", sorted(emb.TASKS))
def test_generators_are_deterministic_with_labels_in_range(name):
    task = emb.TASKS[name]
    first = task.generate(dict(SMALL), np.random.default_rng(0))
    again = task.generate(dict(SMALL), np.random.default_rng(0))
    other = task.generate(dict(SMALL), np.random.default_rng(1))
    assert _digest(first) == _digest(again)
    assert _digest(first) != _digest(other)
    assert {s: len(xs) for s, xs in first.items()} == SMALL
    for xs in first.values():
        for x in xs:
            assert 0 <= x.label < task.num_classes
            assert x.image.size in {(32, 32), (64, 64)}


@pytest.mark.parametrize("name", ["digits", "histology", "dsprites_ori"])
def test_written_tasks_have_the_vtab_layout_every_class_and_read_back(name, tmp_path):
    """One task per group, written in full and read by the real VTAB-1k reader."""
    folder = emb.ensure_embedded(name, tmp_path / "vtab-1k" / f"embedded_{name}")
    n = emb.TASKS[name].num_classes
    sizes = {"train800": 800, "val200": 200, "train800val200": 1000, "test": 500}
    for split, size in sizes.items():
        rows = [line.rsplit(maxsplit=1) for line in (folder / f"{split}.txt").read_text().splitlines()]
        assert len(rows) == size
        if split in ("train800val200", "test"):
            assert {int(label) for _, label in rows} == set(range(n))  # every class present
    assert len(list((folder / "images").iterdir())) == 1500
    cfg = DatasetConfig(name=name, suite="embedded", num_classes=n, folder=f"embedded_{name}",
                        group=emb.TASKS[name].group)
    final = build_splits(cfg, DataConfig(root=str(tmp_path), image_size=32), "final", MEAN, STD)
    assert (len(final.train), len(final.eval)) == (1000, 500)
    image, label = final.eval[0]
    assert image.shape == (3, 32, 32) and 0 <= label < n


def test_dsprites_orientation_bins_and_rendered_angle():
    assert [dspr.orientation_label(i) for i in range(40)] == [math.floor(i / 2.5) for i in range(40)]
    assert sorted(set(dspr.orientation_label(i) for i in range(40))) == list(range(16))
    for idx in (3, 10, 17, 31):
        factors = {"shape": 1, "scale": 5, "orientation": idx, "pos_x": 16, "pos_y": 16}  # an ellipse
        pixels = np.asarray(dspr.render_latents(factors), dtype=float)
        ys, xs = np.nonzero(pixels)
        cov = np.cov(np.stack([xs - xs.mean(), ys - ys.mean()]))
        major = np.linalg.eigh(cov)[1][:, -1]
        measured = math.atan2(major[1], major[0]) % math.pi
        expected = float(dspr.ORIENTATIONS[idx]) % math.pi
        gap = abs(measured - expected)
        assert min(gap, math.pi - gap) < math.radians(6)
        sample = dspr.dsprites_ori({"test": 1}, np.random.default_rng(idx))["test"][0]
        assert sample.label == math.floor(sample.factors["orientation"] / 2.5)


def test_dsprites_location_of_a_known_sample_lands_in_its_bin():
    for pos_x in (0, 7, 20, 31):
        factors = {"shape": 2, "scale": 2, "orientation": 9, "pos_x": pos_x, "pos_y": 5}  # a heart
        cols = np.nonzero(np.asarray(dspr.render_latents(factors)))[1]
        estimate = round((cols.mean() - dspr.MARGIN) / dspr.STEP)
        assert dspr.location_label(estimate) == pos_x // 2


def test_clevr_class_definitions_and_rendered_objects():
    assert [clevr.count_label(n) for n in range(3, 11)] == list(range(8))
    edges = {7.99: 0, 8.0: 1, 8.49: 1, 8.5: 2, 9.2: 3, 9.99: 4, 10.0: 5, 14.0: 5}
    assert {d: clevr.distance_label(d) for d in edges} == edges
    with pytest.raises(ValueError, match="outside VTAB's bins"):
        clevr.distance_label(120.0)
    rng = np.random.default_rng(3)
    for n in (3, 10):
        camera, objects = clevr._scene(rng, n)
        assert len(objects) == n
        for a in objects:  # CLEVR's minimum gap between objects
            for b in objects:
                if a is not b:
                    assert np.linalg.norm(a["centre"][:2] - b["centre"][:2]) - a["r"] - b["r"] >= clevr.MIN_GAP
        empty = np.asarray(clevr.render_scene(camera, []), dtype=int)
        drawn = np.asarray(clevr.render_scene(camera, objects), dtype=int)
        for obj in objects:  # every object centre is painted (by it or by a nearer object)
            x, y = (round(v) for v in camera.project(obj["centre"]))
            assert np.abs(drawn[y, x] - empty[y, x]).sum() > 0
    counts = clevr.clevr_count({"test": 40}, rng)["test"]
    assert all(s.label == s.factors["n_objects"] - 3 for s in counts)
    dists = clevr.clevr_dist({"test": 60}, rng)["test"]
    assert all(s.label == clevr.distance_label(s.factors["closest_depth"]) for s in dists)
    assert {s.label for s in dists} == set(range(6))  # bins drawn uniformly


def test_image_tasks_keep_train_and_test_sources_apart():
    w = {"textures": 512, "histology": 512}
    for name in ("textures", "histology"):
        splits = emb.TASKS[name].generate({"train800": 60, "val200": 20, "test": 40}, np.random.default_rng(0))
        for split, xs in splits.items():
            for x in xs:
                col, size = x.factors["col"], x.factors["size"]
                if split == "test":
                    assert col >= int(images.TEST_COLUMNS[0] * w[name])
                else:
                    assert col + size <= int(images.TRAIN_COLUMNS[1] * w[name])
    digits = images.digits({"train800": 800, "val200": 200, "test": 500}, np.random.default_rng(0))
    seen = [{x.factors["source_index"] for x in xs} for xs in digits.values()]
    assert sum(map(len, seen)) == 1500 and len(set.union(*seen)) == 1500  # no image in two splits


def test_histology_labels_follow_the_dab_threshold():
    splits = images.histology({"train800": 40, "test": 20}, np.random.default_rng(0))
    labels = []
    for x in (x for xs in splits.values() for x in xs):
        assert x.label == int(x.factors["dab_mean"] > x.factors["threshold"])
        labels.append(x.label)
    assert set(labels) == {0, 1}
    # the image pixels are the crop named by the factors (before rotation / flip / resize)
    x = splits["test"][0]
    rgb = images._skimage("immunohistochemistry")
    r, c, s = x.factors["row"], x.factors["col"], x.factors["size"]
    crop = np.rot90(rgb[r : r + s, c : c + s], x.factors["rot90"])
    crop = crop[:, ::-1] if x.factors["flip"] else crop
    expected = Image.fromarray(np.ascontiguousarray(crop)).resize((32, 32), Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(expected), np.asarray(x.image))


def test_the_leaderboard_groups_embedded_tasks_like_vtab():
    import pandas as pd

    from peftbench.results.leaderboard import _embedded_groups

    runs = pd.DataFrame({"task": ["clevr_dist", "digits", "dsprites_loc", "digits"],
                         "group": [emb.TASKS["clevr_dist"].group, emb.TASKS["digits"].group, emb.TASKS["dsprites_loc"].group,
                                   emb.TASKS["digits"].group]})
    assert _embedded_groups(runs) == {"natural": ("digits",), "structured": ("clevr_dist", "dsprites_loc")}
    unknown = pd.concat([runs, pd.DataFrame({"task": ["not_registered"], "group": [None]})])
    assert _embedded_groups(unknown) is None  # no groups for a task whose runs name none
