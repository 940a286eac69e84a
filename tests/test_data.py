"""VTAB-1k and FGVC readers on real small trees in tmp_path: protocols, manifest hash, preprocessing, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from peftbench.data import DataConfig, DatasetConfig, build_splits
from peftbench.errors import ConfigError, DataError

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _png(path: Path, value: int, size: int = 20) -> None:
    """A flat RGB image, ``size`` high and ``size + 4`` wide (not square, so the resize shows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size + 4, 3), value, dtype=np.uint8)).save(path)


def _gradient_jpg(path: Path, height: int = 60, width: int = 80) -> None:
    """A left-to-right ramp (dark to bright), so crops and flips change the pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None].repeat(height, 0).repeat(3, 2)
    Image.fromarray(ramp).save(path, quality=95)


def vtab_tree(root: Path, task: str = "dtd", num_classes: int = 47) -> Path:
    """A VTAB-1k task folder with 8 train800, 4 val200 and 6 test images; labels (7 * i) % C."""
    d = root / "vtab-1k" / task
    lines: dict[str, list[str]] = {}
    for split, n in {"train800": 8, "val200": 4, "test": 6}.items():
        lines[split] = []
        for i in range(n):
            rel = f"images/{split}/{i}.png"
            _png(d / rel, 10 * i)
            lines[split].append(f"{rel} {(i * 7) % num_classes}")
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split, rows in lines.items():
        (d / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return d


def fgvc_tree(
    root: Path, folder: str = "CUB_200_2011", image_dir: str = "images", num_classes: int = 3
) -> Path:
    """An FGVC folder whose json files use 1-based class ids, as the official CUB ids are."""
    d = root / folder
    for split, n in {"train": 6, "val": 3, "test": 3}.items():
        mapping = {}
        for i in range(n):
            rel = f"{i % num_classes + 1:03d}.class/{split}_{i}.jpg"
            _gradient_jpg(d / image_dir / rel)
            mapping[rel] = i % num_classes + 1
        (d / f"{split}.json").write_text(json.dumps(mapping))
    return d


def _vtab_cfg(task: str = "dtd", n: int = 47) -> DatasetConfig:
    return DatasetConfig(name=task, suite="vtab", num_classes=n, folder=task, group="natural")


def _cub_cfg(n: int = 3, image_dir: str = "images") -> DatasetConfig:
    return DatasetConfig(name="cub", suite="fgvc", num_classes=n, folder="CUB_200_2011", image_dir=image_dir)


def _data(root: Path, **kw) -> DataConfig:
    kw.setdefault("image_size", 16)
    return DataConfig(root=str(root), **kw)


def test_vtab_protocols_pick_the_right_splits(tmp_path):
    vtab_tree(tmp_path)
    tune = build_splits(_vtab_cfg(), _data(tmp_path), "tune", MEAN, STD)
    final = build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    assert (tune.train_split, tune.eval_split, len(tune.train), len(tune.eval)) == (
        "train800",
        "val200",
        8,
        4,
    )
    assert (final.train_split, final.eval_split, len(final.train), len(final.eval)) == (
        "train800val200",
        "test",
        12,
        6,
    )
    assert tune.num_classes == final.num_classes == 47
    image, label = final.train[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32  # resized straight to a square
    assert label == 7
    # value 10 with mean/std 0.5: (10/255 - 0.5) / 0.5
    assert image[0, 0, 0].item() == pytest.approx((10 / 255 - 0.5) / 0.5, abs=1e-5)
    _, val_label = tune.eval[3]
    assert val_label == 21  # val200 line 4, not a train800 or test line
    # VTAB has no augmentation: the same item twice is the same tensor
    torch.manual_seed(0)
    first = tune.train[2][0]
    torch.manual_seed(1)
    assert torch.equal(first, tune.train[2][0])
    with pytest.raises(ConfigError, match="valid choices: tune, final"):
        build_splits(_vtab_cfg(), _data(tmp_path), "best", MEAN, STD)


def test_manifest_hash_is_stable_and_sees_label_changes(tmp_path):
    d = vtab_tree(tmp_path)
    first = build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD).manifest_sha256
    assert len(first) == 64
    assert (
        build_splits(_vtab_cfg(), _data(tmp_path, image_size=32), "final", MEAN, STD).manifest_sha256 == first
    )
    tune = build_splits(_vtab_cfg(), _data(tmp_path), "tune", MEAN, STD).manifest_sha256
    assert tune != first
    text = (d / "test.txt").read_text()
    (d / "test.txt").write_text(text.replace("images/test/1.png 7", "images/test/1.png 8"))
    assert build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD).manifest_sha256 != first
    (d / "test.txt").write_text(text)  # restored: the hash comes back
    assert build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD).manifest_sha256 == first


@pytest.mark.parametrize(
    ("mode", "mean", "std"),
    [
        ("backbone", (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)),
        ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ("inception", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ("none", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    ],
)
def test_normalisation_modes_are_applied_and_recorded(tmp_path, mode, mean, std):
    vtab_tree(tmp_path)
    backbone = ((0.3, 0.4, 0.5), (0.2, 0.25, 0.3))
    splits = build_splits(_vtab_cfg(), _data(tmp_path, normalize=mode), "final", *backbone)
    assert splits.normalization == {
        "mode": mode,
        "mean": pytest.approx(list(mean)),
        "std": pytest.approx(list(std)),
        "interpolation": "bicubic",
        "image_size": 16,
    }
    image, _ = splits.eval[3]  # value 30 in every channel
    for c in range(3):
        assert image[c, 5, 5].item() == pytest.approx((30 / 255 - mean[c]) / std[c], abs=1e-5)
    with pytest.raises(ConfigError, match="backbone, imagenet, inception, none"):
        DataConfig(normalize="clip")


def test_interpolation_is_applied_and_invalid_choices_are_rejected(tmp_path):
    fgvc_tree(tmp_path)
    data = {m: _data(tmp_path, interpolation=m, image_size=24) for m in ("bicubic", "nearest")}
    images = {m: build_splits(_cub_cfg(), d, "final", MEAN, STD).eval[0][0] for m, d in data.items()}
    assert not torch.allclose(images["bicubic"], images["nearest"])
    with pytest.raises(ConfigError, match="bicubic, bilinear, nearest"):
        DataConfig(interpolation="lanczos")


def test_fgvc_reader_maps_ids_and_uses_train_plus_val(tmp_path):
    fgvc_tree(tmp_path)
    final = build_splits(_cub_cfg(), _data(tmp_path, image_size=32), "final", MEAN, STD)
    assert (final.train_split, final.eval_split, len(final.train), len(final.eval)) == (
        "train+val",
        "test",
        9,
        3,
    )
    assert [final.train[i][1] for i in range(9)] == [0, 1, 2, 0, 1, 2, 0, 1, 2]  # ids 1..3 -> labels 0..2
    tune = build_splits(_cub_cfg(), _data(tmp_path, image_size=32), "tune", MEAN, STD)
    assert (tune.train_split, tune.eval_split, len(tune.train), len(tune.eval)) == ("train", "val", 6, 3)
    assert tune.manifest_sha256 != final.manifest_sha256


def test_fgvc_resize_crop_and_flip(tmp_path):
    """Eval: resize the short side to 32*256/224 = 37, center crop 32. Train: random crop and flip."""
    fgvc_tree(tmp_path)
    splits = build_splits(_cub_cfg(), _data(tmp_path, image_size=32, normalize="none"), "tune", MEAN, STD)
    image, _ = splits.eval[0]
    assert image.shape == (3, 32, 32)
    torch.manual_seed(0)
    assert torch.equal(image, splits.eval[0][0])  # deterministic
    # the 80x60 ramp becomes 49x37: the centre crop keeps columns 8..39, bright on the right
    row = image[0, 16]
    assert row[0] < row[-1] and 0.1 < row[0].item() < 0.25 and 0.75 < row[-1].item() < 0.9
    flipped = 0
    for seed in range(12):
        torch.manual_seed(seed)
        sample, _ = splits.train[0]
        assert sample.shape == (3, 32, 32)
        flipped += int(sample[0, 16, 0] > sample[0, 16, -1])
    assert 0 < flipped < 12  # horizontal flips happen, but not always


def test_missing_root_and_task_folder_explain_the_layout(tmp_path):
    with pytest.raises(
        DataError, match=r"(?s)data root .* does not exist.*train800val200\.txt.*data\.root=DIR"
    ):
        build_splits(_vtab_cfg(), _data(tmp_path / "nowhere"), "final", MEAN, STD)
    with pytest.raises(DataError, match=r"(?s)task folder .*vtab-1k/dtd does not exist.*VPT / NOAH"):
        build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    with pytest.raises(
        DataError, match=r"(?s)data root .* does not exist.*train\.json, val\.json, test\.json"
    ):
        build_splits(_cub_cfg(200), _data(tmp_path / "nowhere"), "final", MEAN, STD)
    with pytest.raises(
        DataError, match=r"(?s)dataset folder .*CUB_200_2011 does not exist.*CUB_200_2011/images"
    ):
        build_splits(_cub_cfg(200), _data(tmp_path), "final", MEAN, STD)


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
    (d / "test.txt").write_text("images/test/0.png -1\n")
    with pytest.raises(DataError, match=r"test\.txt:1: label -1 is out of range"):
        build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    (d / "val200.txt").unlink()
    with pytest.raises(DataError, match=r"split file .*dtd/val200\.txt is missing"):
        build_splits(_vtab_cfg(), _data(tmp_path), "tune", MEAN, STD)


def test_list_paths_may_contain_spaces(tmp_path):
    d = vtab_tree(tmp_path)
    _png(d / "images" / "a b.png", 200)
    (d / "test.txt").write_text("images/a b.png 3\n")
    splits = build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    image, label = splits.eval[0]
    assert label == 3 and image[0, 0, 0].item() == pytest.approx((200 / 255 - 0.5) / 0.5, abs=1e-5)


def test_bad_json_files_point_at_file_and_key(tmp_path):
    d = fgvc_tree(tmp_path)
    (d / "val.json").write_text('{"a.jpg": 1,\n "b.jpg": }')
    with pytest.raises(DataError, match=r"val\.json:2: not valid JSON"):
        build_splits(_cub_cfg(), _data(tmp_path), "final", MEAN, STD)
    (d / "val.json").write_text('{"a.jpg": "one"}')
    with pytest.raises(DataError, match=r"val\.json: key 'a\.jpg': class id 'one' is not an integer"):
        build_splits(_cub_cfg(), _data(tmp_path), "final", MEAN, STD)
    (d / "val.json").write_text('["a.jpg", 1]')
    with pytest.raises(DataError, match=r"val\.json: expected a JSON object"):
        build_splits(_cub_cfg(), _data(tmp_path), "final", MEAN, STD)
    # 1-based ids 1..3 plus a stray 9: the file and key of the stray id are named
    (d / "val.json").write_text('{"001.class/val_0.jpg": 9}')
    with pytest.raises(
        DataError, match=r"val\.json: key '001\.class/val_0\.jpg': class id 9: out of range .*ids 1\.\.3"
    ):
        build_splits(_cub_cfg(), _data(tmp_path), "final", MEAN, STD)
    (d / "val.json").write_text('{"001.class/val_0.jpg": 1}')
    with pytest.raises(DataError, match=r"3 distinct class ids, the task has 4 classes"):
        build_splits(_cub_cfg(4), _data(tmp_path), "final", MEAN, STD)
    (d / "test.json").unlink()
    with pytest.raises(DataError, match=r"split file .*CUB_200_2011/test\.json is missing"):
        build_splits(_cub_cfg(), _data(tmp_path), "tune", MEAN, STD)


def test_sparse_fgvc_ids_map_to_contiguous_labels(tmp_path):
    """NABirds-style ids (sparse, not 0/1-based) map in sorted order, across all splits."""
    d = fgvc_tree(tmp_path)
    remap = {1: 817, 2: 295, 3: 1010}
    for split in ("train", "val", "test"):
        obj = json.loads((d / f"{split}.json").read_text())
        (d / f"{split}.json").write_text(json.dumps({k: remap[v] for k, v in obj.items()}))
    splits = build_splits(_cub_cfg(), _data(tmp_path), "final", MEAN, STD)
    assert [splits.eval[i][1] for i in range(3)] == [1, 0, 2]  # 817 -> 1, 295 -> 0, 1010 -> 2


def test_missing_fgvc_image_folder_is_named(tmp_path):
    fgvc_tree(tmp_path)
    with pytest.raises(
        DataError, match=r"image folder .*CUB_200_2011/Images does not exist.*dataset\.image_dir"
    ):
        build_splits(_cub_cfg(image_dir="Images"), _data(tmp_path), "final", MEAN, STD)


def test_unreadable_image_names_its_path(tmp_path):
    d = vtab_tree(tmp_path)
    (d / "images" / "test" / "2.png").write_bytes(b"not a png")
    (d / "images" / "test" / "3.png").unlink()
    splits = build_splits(_vtab_cfg(), _data(tmp_path), "final", MEAN, STD)
    assert splits.eval[1][1] == 7  # the readable ones still load
    with pytest.raises(DataError, match=r"cannot read image .*images/test/2\.png"):
        splits.eval[2]
    with pytest.raises(DataError, match=r"cannot read image .*images/test/3\.png"):
        splits.eval[3]
    fg = fgvc_tree(tmp_path)
    (fg / "images" / "002.class" / "test_1.jpg").write_bytes(b"\xff\xd8 truncated")
    fsplits = build_splits(_cub_cfg(), _data(tmp_path), "final", MEAN, STD)
    with pytest.raises(DataError, match=r"cannot read image .*images/002\.class/test_1\.jpg"):
        fsplits.eval[1]
