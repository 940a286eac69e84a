"""VTAB-1k and FGVC readers on real small trees in tmp_path, the embedded task, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from peftbench.cli import config_dir, group_options
from peftbench.config import build_config, to_plain
from peftbench.data import DataConfig, DatasetConfig, build_splits
from peftbench.data.embedded import ensure_embedded
from peftbench.errors import ConfigError, DataError
from peftbench.results.suites import FGVC_TASKS, VTAB_GROUPS

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _png(path: Path, value: int, size: int = 20) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size + 4, 3), value, dtype=np.uint8)).save(path)


def vtab_tree(root: Path, task: str = "dtd", num_classes: int = 47) -> Path:
    """A VTAB-1k task folder with 8 train800, 4 val200 and 6 test images."""
    d = root / "vtab-1k" / task
    splits = {"train800": 8, "val200": 4, "test": 6}
    lines = {}
    for split, n in splits.items():
        lines[split] = []
        for i in range(n):
            rel = f"images/{split}/{i}.png"
            _png(d / rel, 10 * i)
            lines[split].append(f"{rel} {(i * 7) % num_classes}")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (d / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return d


def fgvc_tree(root: Path, folder: str = "CUB_200_2011", image_dir: str = "images", num_classes: int = 3) -> Path:
    """An FGVC folder whose json files use 1-based class ids, as CUB's do."""
    d = root / folder
    for split, n in {"train": 6, "val": 3, "test": 3}.items():
        mapping = {}
        for i in range(n):
            rel = f"{i % num_classes + 1:03d}.class/{split}_{i}.jpg"
            _png(d / image_dir / rel, 20 * i, size=300)
            mapping[rel] = i % num_classes + 1
        (d / f"{split}.json").write_text(json.dumps(mapping))
    return d


def _vtab_cfg(task="dtd", n=47):
    return DatasetConfig(name=task, suite="vtab", num_classes=n, folder=task, group="natural")


def _data(root, **kw):
    return DataConfig(root=str(root), image_size=16, **kw)


def test_vtab_protocols_pick_the_right_splits(tmp_path):
    vtab_tree(tmp_path)
    tune = build_splits(_vtab_cfg(), _data(tmp_path), "tune", MEAN, STD)
    final = build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    assert (tune.train_split, tune.eval_split, len(tune.train), len(tune.eval)) == ("train800", "val200", 8, 4)
    assert (final.train_split, final.eval_split, len(final.train), len(final.eval)) == ("train800val200", "test", 12, 6)
    image, label = final.train[1]
    assert image.shape == (3, 16, 16)  # resized straight to the square size, no crop
    assert label == 7
    # value 10 with mean/std 0.5: (10/255 - 0.5) / 0.5
    assert image[0, 0, 0].item() == pytest.approx((10 / 255 - 0.5) / 0.5, abs=1e-5)
    with pytest.raises(ConfigError, match="tune, final"):
        build_splits(_vtab_cfg(), _data(tmp_path), "best", MEAN, STD)


def test_manifest_hash_is_stable_and_sees_label_changes(tmp_path):
    d = vtab_tree(tmp_path)
    first = build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD).manifest_sha256
    assert build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD).manifest_sha256 == first
    tune = build_splits(_vtab_cfg(), _data(tmp_path), "tune", MEAN, STD).manifest_sha256
    assert tune != first
    text = (d / "test.txt").read_text().replace("images/test/1.png 7", "images/test/1.png 8")
    (d / "test.txt").write_text(text)
    assert build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD).manifest_sha256 != first


@pytest.mark.parametrize(
    ("mode", "mean", "std"),
    [("backbone", MEAN, STD), ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
     ("inception", MEAN, STD), ("none", (0, 0, 0), (1, 1, 1))],
)
def test_normalisation_modes_are_applied_and_recorded(tmp_path, mode, mean, std):
    vtab_tree(tmp_path)
    splits = build_splits(_vtab_cfg(), _data(tmp_path, normalize=mode), "final", MEAN, STD)
    assert splits.normalization["mode"] == mode and splits.normalization["interpolation"] == "bicubic"
    image, _ = splits.eval[3]  # value 30
    assert image[0, 5, 5].item() == pytest.approx((30 / 255 - mean[0]) / std[0], abs=1e-5)
    with pytest.raises(ConfigError, match="backbone, imagenet, inception, none"):
        DataConfig(normalize="clip")


def test_fgvc_reader_maps_ids_and_uses_train_plus_val(tmp_path):
    fgvc_tree(tmp_path)
    cfg = DatasetConfig(name="cub", suite="fgvc", num_classes=3, folder="CUB_200_2011", image_dir="images")
    final = build_splits(cfg, DataConfig(root=str(tmp_path), image_size=224), "final", MEAN, STD)
    assert (final.train_split, final.eval_split, len(final.train), len(final.eval)) == ("train+val", "test", 9, 3)
    image, label = final.eval[2]
    assert image.shape == (3, 224, 224) and label == 2  # id 3 -> label 2
    tune = build_splits(cfg, DataConfig(root=str(tmp_path), image_size=224), "tune", MEAN, STD)
    assert (tune.train_split, tune.eval_split) == ("train", "val")
    torch.manual_seed(0)
    a, _ = tune.train[0]
    assert a.shape == (3, 224, 224)  # random crop of the 256-resized image


def test_missing_root_and_task_folder_explain_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"(?s)data root .* does not exist.*train800val200\.txt.*data\.root=DIR"):
        build_splits(_vtab_cfg(), _data(tmp_path / "nowhere"), "final", MEAN, STD)
    with pytest.raises(DataError, match=r"task folder .*vtab-1k/dtd does not exist"):
        build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    fg = DatasetConfig(name="cub", suite="fgvc", num_classes=200, folder="CUB_200_2011", image_dir="images")
    with pytest.raises(DataError, match=r"train\.json, val\.json, test\.json"):
        build_splits(fg, _data(tmp_path), "final", MEAN, STD)


def test_bad_list_files_point_at_file_and_line(tmp_path):
    d = vtab_tree(tmp_path)
    (d / "test.txt").write_text("images/test/0.png 1\nimages/test/1.png\n")
    with pytest.raises(DataError, match=r"test\.txt:2: expected '<relative path> <label>'"):
        build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    (d / "test.txt").write_text("images/test/0.png 1\nimages/test/1.png x\n")
    with pytest.raises(DataError, match=r"test\.txt:2: label 'x' is not an integer"):
        build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    (d / "test.txt").write_text("images/test/0.png 1\n\nimages/test/1.png 47\n")
    with pytest.raises(DataError, match=r"test\.txt:3: label 47 is out of range \[0, 47\)"):
        build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    (d / "val200.txt").unlink()
    with pytest.raises(DataError, match=r"split file .*val200\.txt is missing"):
        build_splits(_vtab_cfg(), _data(tmp_path), "tune", MEAN, STD)


def test_bad_json_and_class_counts(tmp_path):
    d = fgvc_tree(tmp_path)
    cfg = DatasetConfig(name="cub", suite="fgvc", num_classes=3, folder="CUB_200_2011", image_dir="images")
    (d / "val.json").write_text('{"a.jpg": 1,\n "b.jpg": }')
    with pytest.raises(DataError, match=r"val\.json:2: not valid JSON"):
        build_splits(cfg, _data(tmp_path), "final", MEAN, STD)
    (d / "val.json").write_text('{"a.jpg": "one"}')
    with pytest.raises(DataError, match=r"val\.json: key 'a\.jpg': class id 'one' is not an integer"):
        build_splits(cfg, _data(tmp_path), "final", MEAN, STD)
    (d / "val.json").write_text('{"001.class/val_0.jpg": 9}')
    with pytest.raises(DataError, match=r"4 distinct class ids, the task has 3 classes"):
        build_splits(cfg, _data(tmp_path), "final", MEAN, STD)


def test_unreadable_image_names_its_path(tmp_path):
    d = vtab_tree(tmp_path)
    (d / "images" / "test" / "2.png").write_bytes(b"not a png")
    splits = build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    with pytest.raises(DataError, match=r"cannot read image .*images/test/2\.png"):
        splits.eval[2]


def test_embedded_task_is_deterministic_and_follows_the_dsprites_rule(tmp_path):
    a = ensure_embedded("dsprites_loc", tmp_path / "a" / "dsprites_loc")
    b = ensure_embedded("dsprites_loc", tmp_path / "b" / "dsprites_loc")
    for split, n in {"train800": 800, "val200": 200, "train800val200": 1000, "test": 500}.items():
        lines = (a / f"{split}.txt").read_text().splitlines()
        assert len(lines) == n and lines == (b / f"{split}.txt").read_text().splitlines()
    assert (a / "images/test_0007.png").read_bytes() == (b / "images/test_0007.png").read_bytes()
    labels = [int(line.split()[1]) for line in (a / "train800val200.txt").read_text().splitlines()]
    assert set(labels) == set(range(16))
    # the label is the x-position index // 2: the shape's centre column must fall in that band
    for line in (a / "test.txt").read_text().splitlines()[:50]:
        rel, label = line.split()
        cols = np.nonzero(np.asarray(Image.open(a / rel)).max(axis=0))[0]
        centre = (cols.min() + cols.max()) / 2
        band = (12 + 2 * int(label) * 40 / 31, 12 + (2 * int(label) + 1) * 40 / 31)
        assert band[0] - 6 <= centre <= band[1] + 6
    mtime = (a / "test.txt").stat().st_mtime_ns
    ensure_embedded("dsprites_loc", a)  # idempotent: a complete copy is kept
    assert (a / "test.txt").stat().st_mtime_ns == mtime
    (a / ".peftbench-embedded").unlink()  # an interrupted generation is redone
    ensure_embedded("dsprites_loc", a)
    assert (a / ".peftbench-embedded").exists()


def _compose_dataset(option: str) -> dict:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return to_plain(compose(config_name="train", overrides=[f"dataset={option}"]))["dataset"]


@pytest.mark.parametrize("option", group_options("dataset"))
def test_every_dataset_yaml_builds_a_typed_config(option):
    cfg = build_config(DatasetConfig, _compose_dataset(option), "dataset")
    suite, _, _ = option.partition("/")
    assert cfg.suite == suite
    if suite == "vtab":
        group = next(g for g, tasks in VTAB_GROUPS.items() if cfg.name in tasks)
        assert cfg.group == group
    if suite == "fgvc":
        assert cfg.name in FGVC_TASKS


@pytest.mark.parametrize(
    ("alias", "name", "classes"),
    [("vtab/cifar100", "cifar", 100), ("vtab/pets", "oxford_iiit_pet", 37), ("vtab/flowers102", "oxford_flowers102", 102),
     ("vtab/retinopathy", "diabetic_retinopathy", 5), ("fgvc/cub200", "cub", 200), ("fgvc/dogs", "stanford_dogs", 120)],
)
def test_aliases_resolve_to_the_canonical_task(alias, name, classes):
    ds = _compose_dataset(alias)
    assert (ds["name"], ds["num_classes"]) == (name, classes)


def test_vtab_configs_cover_the_19_tasks_with_the_reference_class_counts():
    expected = {"cifar": 100, "caltech101": 102, "dtd": 47, "oxford_flowers102": 102, "oxford_iiit_pet": 37,
                "svhn": 10, "sun397": 397, "patch_camelyon": 2, "eurosat": 10, "resisc45": 45,
                "diabetic_retinopathy": 5, "clevr_count": 8, "clevr_dist": 6, "dmlab": 6, "kitti": 4,
                "dsprites_loc": 16, "dsprites_ori": 16, "smallnorb_azi": 18, "smallnorb_ele": 9}
    found = {}
    for option in group_options("dataset"):
        if option.startswith("vtab/"):
            ds = _compose_dataset(option)
            found[ds["name"]] = ds["num_classes"]
    assert found == expected
    fgvc = {_compose_dataset(o)["name"]: _compose_dataset(o)["num_classes"] for o in group_options("dataset") if o.startswith("fgvc/")}
    assert fgvc == {"cub": 200, "nabirds": 555, "oxford_flowers": 102, "stanford_dogs": 120, "stanford_cars": 196}
