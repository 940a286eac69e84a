"""peftbench-prepare fgvc on small copies of the official downloads (same file formats: CUB / NABirds
metadata text files, Oxford Flowers and Stanford Dogs / Cars .mat files, tar archives), then the
existing FGVC reader and verify on the written folders."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from peftbench.cli.prepare import main
from peftbench.data import DataConfig, DatasetConfig, build_splits
from peftbench.prepare.protocol import FGVC_DATASETS

savemat = pytest.importorskip("scipy.io").savemat


def _jpg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value % 256, dtype=np.uint8)).save(path)


def birds_source(base: Path, class_ids: list[int], train: int, test: int) -> None:
    """CUB_200_2011 / nabirds layout: images.txt, image_class_labels.txt, train_test_split.txt, images/."""
    images, labels, split = [], [], []
    n = 0
    for cid in class_ids:
        for i in range(train + test):
            n += 1
            image_id = f"{n:04x}-id"
            rel = f"{cid:04d}.class/img_{cid}_{i}.jpg"
            _jpg(base / "images" / rel, cid)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {cid}")
            split.append(f"{image_id} {int(i < train)}")
    for name, rows in (("images.txt", images), ("image_class_labels.txt", labels), ("train_test_split.txt", split)):
        (base / name).write_text("\n".join(rows) + "\n")


def _read(folder: Path) -> dict[str, dict[str, int]]:
    return {s: json.loads((folder / f"{s}.json").read_text()) for s in ("train", "val", "test")}


def _reader(root: Path, name: str) -> tuple[int, int]:
    d = FGVC_DATASETS[name]
    cfg = DatasetConfig(name=name, suite="fgvc", num_classes=d.num_classes, folder=d.folder, image_dir=d.image_dir)
    splits = build_splits(cfg, DataConfig(root=str(root), image_size=8), "final", (0.5,) * 3, (0.5,) * 3)
    image, label = splits.eval[0]
    assert image.shape == (3, 8, 8) and 0 <= label < d.num_classes
    return len(splits.train), len(splits.eval)


def test_cub_folder_seeded_val_draw(tmp_path: Path, capsys) -> None:
    src = tmp_path / "downloads" / "CUB_200_2011"
    birds_source(src, list(range(1, 201)), train=3, test=1)
    root = tmp_path / "data"
    root.mkdir()
    assert main(["fgvc", "--root", str(root), "--dataset", "cub200", "--source", str(src)]) == 0
    assert "cub: prepared" in capsys.readouterr().out
    folder = root / "CUB_200_2011"
    splits = _read(folder)
    assert len(splits["val"]) == round(600 * 600 / 5994) == 60
    assert len(splits["train"]) == 540 and len(splits["test"]) == 200
    assert not set(splits["train"]) & set(splits["val"])
    assert splits["test"]["0007.class/img_7_3.jpg"] == 7  # official class ids kept
    assert (folder / "images").is_symlink() and (folder / "images" / "0001.class" / "img_1_0.jpg").is_file()
    assert "permutation" in json.loads((folder / "source.json").read_text())["split"]
    assert _reader(root, "cub") == (600, 200)
    assert main(["verify", "--root", str(root), "--suite", "fgvc", "--partial"]) == 0
    assert "fgvc/cub: OK" in capsys.readouterr().out
    # the same seed draws the same val set; a second run in place is skipped
    assert main(["fgvc", "--root", str(root), "--dataset", "cub", "--source", str(src)]) == 0
    assert "already prepared" in capsys.readouterr().out
    other = tmp_path / "other"
    other.mkdir()
    main(["fgvc", "--root", str(other), "--dataset", "cub", "--source", str(src)])
    assert _read(other / "CUB_200_2011") == splits


def test_cub_archive_with_vpt_splits(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    birds_source(stage / "CUB_200_2011", list(range(1, 201)), train=3, test=1)
    archive = tmp_path / "CUB_200_2011.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(stage / "CUB_200_2011", arcname="CUB_200_2011")
    vpt = tmp_path / "vpt"
    vpt.mkdir()
    train = {f"{c:04d}.class/img_{c}_{i}.jpg": c for c in range(1, 201) for i in (0, 1)}
    val = {f"{c:04d}.class/img_{c}_2.jpg": c for c in range(1, 201)}
    (vpt / "train.json").write_text(json.dumps(train))
    (vpt / "val.json").write_text(json.dumps(val))
    root = tmp_path / "data"
    root.mkdir()
    args = ["fgvc", "--root", str(root), "--dataset", "cub", "--source", str(archive), "--splits", str(vpt)]
    assert main(args) == 0
    splits = _read(root / "CUB_200_2011")
    assert splits["train"] == train and splits["val"] == val and len(splits["test"]) == 200
    info = json.loads((root / "CUB_200_2011" / "source.json").read_text())
    assert info["split"] == "VPT's published split files" and set(info["sha256"]) == {"train", "val"}
    assert (root / ".peftbench-extract" / "cub" / "CUB_200_2011.tgz" / "CUB_200_2011" / "images").is_dir()
    assert _reader(root, "cub") == (600, 200)


def test_vpt_splits_of_another_dataset_are_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "CUB_200_2011"
    birds_source(src, list(range(1, 201)), train=2, test=1)
    vpt = tmp_path / "vpt"
    vpt.mkdir()
    (vpt / "train.json").write_text(json.dumps({"n02085620-Chihuahua/x.jpg": 1}))
    (vpt / "val.json").write_text("{}")
    root = tmp_path / "data"
    root.mkdir()
    code = main(["fgvc", "--root", str(root), "--dataset", "cub", "--source", str(src), "--splits", str(vpt)])
    err = capsys.readouterr().err
    assert code == 2 and "are not official training images of cub" in err and "Traceback" not in err
    assert not (root / "CUB_200_2011").exists()


def test_nabirds_sparse_class_ids(tmp_path: Path) -> None:
    src = tmp_path / "nabirds"
    ids = list(range(295, 295 + 2 * 555, 2))  # sparse, as the NABirds leaf ids are
    birds_source(src, ids, train=1, test=1)
    root = tmp_path / "data"
    root.mkdir()
    assert main(["fgvc", "--root", str(root), "--dataset", "nabirds", "--source", str(src)]) == 0
    splits = _read(root / "nabirds")
    assert len(splits["val"]) == round(555 * 2393 / 23929) and len(splits["test"]) == 555
    assert set(splits["test"].values()) == set(ids)
    assert _reader(root, "nabirds") == (555, 555)


def test_oxford_flowers_mat_files(tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    labels = np.array([i % 102 + 1 for i in range(306)], dtype=np.uint8)  # image_00001.jpg has labels[0]
    for i, y in enumerate(labels, start=1):
        _jpg(dl / "jpg" / f"image_{i:05d}.jpg", int(y))
    savemat(dl / "imagelabels.mat", {"labels": labels[None, :]})
    ids = np.arange(1, 307)
    savemat(dl / "setid.mat", {"trnid": ids[0::3][None], "valid": ids[1::3][None], "tstid": ids[2::3][None]})
    root = tmp_path / "data"
    root.mkdir()
    sources = ["--source", str(dl / "jpg"), "--source", str(dl / "imagelabels.mat"), "--source", str(dl / "setid.mat")]
    assert main(["fgvc", "--root", str(root), "--dataset", "flowers", *sources]) == 0
    splits = _read(root / "OxfordFlower")
    assert [len(splits[s]) for s in ("train", "val", "test")] == [102, 102, 102]
    assert splits["val"]["jpg/image_00002.jpg"] == 2 and splits["test"]["jpg/image_00306.jpg"] == 102
    assert _reader(root, "oxford_flowers") == (204, 102)


def test_stanford_dogs_from_two_tar_archives(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    files = {"train": [], "test": []}
    for c in range(1, 121):
        for i, split in enumerate(("train", "train", "test")):
            rel = f"n{c:08d}-breed{c}/n{c:08d}_{i}.jpg"
            _jpg(stage / "Images" / rel, c)
            files[split].append(rel)
    (stage / "lists").mkdir()
    for split, rels in files.items():
        labels = [int(r.split("-")[0][1:]) for r in rels]
        savemat(stage / "lists" / f"{split}_list.mat",
                {"file_list": np.array(rels, dtype=object)[:, None], "labels": np.array(labels)[:, None]})
    with tarfile.open(tmp_path / "images.tar", "w") as tar:
        tar.add(stage / "Images", arcname="Images")
    with tarfile.open(tmp_path / "lists.tar", "w") as tar:
        for split in files:
            tar.add(stage / "lists" / f"{split}_list.mat", arcname=f"{split}_list.mat")
    root = tmp_path / "data"
    root.mkdir()
    sources = ["--source", str(tmp_path / "images.tar"), "--source", str(tmp_path / "lists.tar")]
    assert main(["fgvc", "--root", str(root), "--dataset", "dogs", *sources]) == 0
    splits = _read(root / "StanfordDogs")
    assert len(splits["val"]) == 24 and len(splits["train"]) == 216 and len(splits["test"]) == 120
    assert splits["test"]["n00000005-breed5/n00000005_2.jpg"] == 5
    assert _reader(root, "stanford_dogs") == (240, 120)


def test_stanford_cars_devkit_annotations(tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    fields = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    for folder, annos, per_class in (
        ("cars_train", dl / "devkit" / "cars_train_annos.mat", 2),
        ("cars_test", dl / "cars_test_annos_withlabels.mat", 1),
    ):
        rows = []
        for n in range(196 * per_class):
            cls, name = n % 196 + 1, f"{n + 1:05d}.jpg"
            _jpg(dl / folder / name, cls)
            rows.append((1, 2, 3, 4, cls, name))
        annos.parent.mkdir(parents=True, exist_ok=True)
        savemat(annos, {"annotations": np.array(rows, dtype=fields)[None, :]})
    root = tmp_path / "data"
    root.mkdir()
    assert main(["fgvc", "--root", str(root), "--dataset", "cars", "--source", str(dl)]) == 0
    splits = _read(root / "StanfordCars")
    assert len(splits["val"]) == round(392 * 815 / 8144) and len(splits["test"]) == 196
    assert splits["test"]["cars_test/00003.jpg"] == 3
    assert (root / "StanfordCars" / "cars_train").is_symlink()
    assert _reader(root, "stanford_cars") == (392, 196)


def test_fgvc_user_errors(tmp_path: Path, capsys) -> None:
    assert main(["fgvc", "--root", str(tmp_path), "--dataset", "aircraft", "--source", str(tmp_path)]) == 2
    assert "unknown FGVC dataset 'aircraft'; valid choices: cub, nabirds" in capsys.readouterr().err
    assert main(["fgvc", "--root", str(tmp_path), "--dataset", "cub"]) == 2
    assert "no --source given" in capsys.readouterr().err
    assert main(["fgvc", "--root", str(tmp_path), "--dataset", "cub", "--source", str(tmp_path / "x.tgz")]) == 2
    assert "x.tgz does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["fgvc", "--root", str(tmp_path), "--dataset", "cub", "--source", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "images.txt (image id -> path) not found in the sources" in err and "Traceback" not in err
    assert not (tmp_path / "CUB_200_2011").exists()
