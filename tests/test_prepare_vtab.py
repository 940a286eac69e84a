"""peftbench-prepare vtab on small originals in torchvision's own layouts, read by the real torchvision
classes (download=False): DTD, Oxford-IIIT Pet, EuroSAT, CLEVR. Each source image is a flat colour that
encodes its class, so the tests can check that every written PNG carries the label it is listed with."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from peftbench.cli.prepare import main
from peftbench.data import DataConfig, DatasetConfig, build_splits
from peftbench.errors import DataError, UnknownNameError
from peftbench.prepare.originals import DSPRITES_FILE, closest_bin
from peftbench.prepare.protocol import VTAB_TASKS
from peftbench.prepare.verify import verify_vtab_task
from peftbench.prepare.vtab import TFDS_LABELS, TORCHVISION, prepare_vtab
from peftbench.prepare.writer import MARKER, staging_dir


def _colour(label: int) -> int:
    return (label * 5 + 3) % 256


def _image(path: Path, label: int, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), _colour(label), dtype=np.uint8)).save(path, format=fmt)


def dtd_source(dl: Path, per_class: dict[str, int]) -> None:
    """``dl/dtd/dtd/{images/<class>/*.jpg, labels/{train,val,test}1.txt}`` as in dtd-r1.0.1.tar.gz."""
    base = dl / "dtd" / "dtd"
    classes = [f"class{c:02d}" for c in range(47)]
    for split, n in per_class.items():
        lines = []
        for label, cls in enumerate(classes):
            for i in range(n):
                name = f"{cls}_{split}_{i:03d}.jpg"
                _image(base / "images" / cls / name, label)
                lines.append(f"{cls}/{name}")
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")


def pets_source(dl: Path, n_trainval: int, n_test: int) -> None:
    """``dl/oxford-iiit-pet/{images/*.jpg, annotations/{trainval,test}.txt}`` (class ids 1-based)."""
    base = dl / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    for split, n in (("trainval", n_trainval), ("test", n_test)):
        lines = []
        for i in range(n):
            label = i % 37
            image_id = f"breed{label:02d}_{split}{i}"
            _image(base / "images" / f"{image_id}.jpg", label)
            lines.append(f"{image_id} {label + 1} {1 + label % 2} {i % 12 + 1}")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")


def eurosat_source(dl: Path, n: int) -> None:
    """``dl/eurosat/2750/<class>/*.jpg`` (the class folders sort alphabetically as TFDS's label names)."""
    names = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
             "PermanentCrop", "Residential", "River", "SeaLake"]
    for i in range(n):
        label = i % 10
        _image(dl / "eurosat" / "2750" / names[label] / f"{names[label]}_{i}.jpg", label)


# closest-object depth per clevr_dist class (bins 0 | 8 | 8.5 | 9 | 9.5 | 10 | 100), and a farther one
DEPTHS = [7.0, 8.2, 8.7, 9.1, 9.9, 10.5]


def clevr_source(dl: Path, n_train: int, n_val: int, colour_by: str = "count") -> None:
    """``dl/clevr/CLEVR_v1.0/{images/<split>/*.png, scenes/CLEVR_<split>_scenes.json}``: 3-10 objects,
    the closest at ``DEPTHS[i % 6]``; the pixels encode the count (clevr_count) or the depth bin."""
    base = dl / "clevr" / "CLEVR_v1.0"
    for split, n in (("train", n_train), ("val", n_val)):
        scenes = []
        for i in range(n):
            count, dist = 3 + i % 8, i % 6
            name = f"CLEVR_{split}_{i:06d}.png"
            _image(base / "images" / split / name, count - 3 if colour_by == "count" else dist)
            objects = [{"pixel_coords": [10, 20, DEPTHS[dist] + 0.5 * k]} for k in range(count)][::-1]
            scenes.append({"image_filename": name, "objects": objects})
        (base / "scenes").mkdir(parents=True, exist_ok=True)
        (base / "scenes" / f"CLEVR_{split}_scenes.json").write_text(json.dumps({"scenes": scenes}))


def _lines(task_dir: Path, name: str) -> list[tuple[str, int]]:
    return [(p, int(y)) for p, y in (ln.rsplit(maxsplit=1) for ln in (task_dir / f"{name}.txt").read_text().splitlines())]


def _check_written(task_dir: Path, task: str, val_split: str, test_split: str, n_test: int) -> None:
    """Sizes, the recipe's source splits, labels matching the pixels, and a clean verify."""
    train, val, both, test = (_lines(task_dir, s) for s in ("train800", "val200", "train800val200", "test"))
    assert (len(train), len(val), len(both), len(test)) == (800, 200, 1000, n_test)
    assert both == train + val
    assert all(p.startswith("images/train/") for p, _ in train)
    assert all(p.startswith(f"images/{val_split}/") for p, _ in val)
    assert all(p.startswith(f"images/{test_split}/") for p, _ in test)
    for rel, label in train[:50] + val[:50] + test[:50]:
        with Image.open(task_dir / rel) as img:
            assert img.format == "PNG"
            assert abs(int(np.asarray(img.convert("RGB"))[0, 0, 0]) - _colour(label)) <= 3, rel
    info = json.loads((task_dir / "source.json").read_text())
    assert info["task"] == task and info["source"] == TORCHVISION[task].cls
    assert info["counts"] == {"train800": 800, "val200": 200, "test": n_test, "train800val200": 1000}
    assert (task_dir / MARKER).is_file()
    report = verify_vtab_task(task_dir, VTAB_TASKS[task], partial_test=True)
    assert report.ok, report.problems


def test_dtd_recipe_labels_and_reader(tmp_path: Path, capsys) -> None:
    dl = tmp_path / "dl"
    dtd_source(dl, {"train": 18, "val": 5, "test": 2})  # 846 / 235 / 94 images
    assert main(["vtab", "--root", str(tmp_path), "--tasks", "dtd", "--download-dir", str(dl)]) == 0
    assert "dtd: prepared from torchvision.datasets.DTD" in capsys.readouterr().out
    task_dir = tmp_path / "vtab-1k" / "dtd"
    _check_written(task_dir, "dtd", "validation", "test", 94)
    # the seeded permutation spreads train800 over the class-sorted list: all 47 classes occur
    assert len({y for _, y in _lines(task_dir, "train800")}) == 47
    # the existing reader takes the tree as it is
    cfg = DatasetConfig(name="dtd", suite="vtab", num_classes=47, folder="dtd", group="natural")
    splits = build_splits(cfg, DataConfig(root=str(tmp_path), image_size=8), "final", (0.5,) * 3, (0.5,) * 3)
    assert (len(splits.train), len(splits.eval)) == (1000, 94)
    # idempotent: the second run skips the complete task and writes nothing
    before = (task_dir / "train800.txt").stat().st_mtime_ns
    assert main(["vtab", "--root", str(tmp_path), "--tasks", "dtd", "--download-dir", str(dl)]) == 0
    assert "dtd: already prepared" in capsys.readouterr().out
    assert (task_dir / "train800.txt").stat().st_mtime_ns == before
    # another seed draws other images from the same splits (the same seed: see the resume test)
    other = tmp_path / "seed1"
    other.mkdir()
    prepare_vtab(other, ["dtd"], download_dir=dl, seed=1, log=lambda _: None)
    assert (other / "vtab-1k" / "dtd" / "train800.txt").read_text() != (task_dir / "train800.txt").read_text()


def test_pets_eurosat_clevr(tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    pets_source(dl, 1000, 40)  # val200 = trainval[80%:80%+200] = [800:1000]
    eurosat_source(dl, 1340)  # val200 = [60%:+200] = [804:1004], test = [80%:] = [1072:1340]
    clevr_source(dl, 2000, 30)  # val200 = train[90%:+200] = [1800:2000], test = CLEVR val
    prepare_vtab(tmp_path, ["pets", "eurosat", "clevr_count"], download_dir=dl, log=lambda _: None)
    vtab = tmp_path / "vtab-1k"
    _check_written(vtab / "oxford_iiit_pet", "oxford_iiit_pet", "train", "test", 40)
    _check_written(vtab / "eurosat", "eurosat", "train", "train", 268)
    _check_written(vtab / "clevr_count", "clevr_count", "train", "validation", 30)
    assert {y for _, y in _lines(vtab / "clevr_count", "test")} == set(range(8))  # counts 3..10 -> 0..7


def test_clevr_dist_and_dsprites_without_tensorflow(tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    clevr_source(dl, 2000, 30, colour_by="dist")
    # the original dSprites .npz: imgs (N, 64, 64) in {0, 1}, latents_classes (N, 6); here the image
    # is a flat value carrying posX, and orientation = index % 40
    n = 2000
    latents = np.zeros((n, 6), dtype=np.int64)
    latents[:, 4], latents[:, 3] = np.arange(n) % 32, np.arange(n) % 40
    imgs = np.zeros((n, 64, 64), dtype=np.uint8)
    imgs[:, :2, :2] = 1  # a 2x2 sprite in the corner
    (dl / "dsprites").mkdir()
    np.savez_compressed(dl / "dsprites" / DSPRITES_FILE, imgs=imgs, latents_classes=latents)
    prepare_vtab(tmp_path, ["clevr_dist", "dsprites_loc", "dsprites_ori"], download_dir=dl, log=lambda _: None)
    vtab = tmp_path / "vtab-1k"
    _check_written(vtab / "clevr_dist", "clevr_dist", "train", "validation", 30)
    loc = vtab / "dsprites_loc"
    train = _lines(loc, "train800")
    assert all(y == (int(p.split("/")[-1][:-4]) % 32) // 2 for p, y in train)
    ori = _lines(vtab / "dsprites_ori", "test")
    assert len(ori) == 200 and all(y == (int(p.split("/")[-1][:-4]) % 40) * 16 // 40 for p, y in ori)
    assert {y for _, y in ori} <= set(range(16))
    with Image.open(loc / train[0][0]) as img:
        assert img.mode == "L" and img.getpixel((0, 0)) == 255 and img.getpixel((5, 5)) == 0
    info = json.loads((loc / "source.json").read_text())
    assert info["source"] == "peftbench.prepare.originals.Dsprites"
    assert info["recipe"]["test"] == "train[90%:] = train[1800:2000]"


def test_staging_from_another_source_is_discarded(tmp_path: Path, capsys) -> None:
    dl = tmp_path / "dl"
    dtd_source(dl, {"train": 18, "val": 5, "test": 1})
    staging = staging_dir(tmp_path / "vtab-1k" / "dtd")
    stale = staging / "images" / "train" / "000000.png"
    stale.parent.mkdir(parents=True)
    Image.fromarray(np.full((2, 2), 77, dtype=np.uint8)).save(stale)
    (staging / ".partial-source.json").write_text(json.dumps({"task": "dtd", "source": "tfds:dtd"}))
    prepare_vtab(tmp_path, ["dtd"], download_dir=dl)
    assert "discarding the unfinished build" in capsys.readouterr().out
    written = tmp_path / "vtab-1k" / "dtd" / "images" / "train" / "000000.png"
    if written.exists():  # only if index 0 was drawn; then it must be the real image, not the stale one
        with Image.open(written) as img:
            assert img.size == (4, 4)
    assert not (tmp_path / "vtab-1k" / "dtd" / ".partial-source.json").exists()
    assert len(list((tmp_path / "vtab-1k" / "dtd" / "images").rglob("*.png"))) == 1000 + 47


def test_interrupted_task_resumes_from_staging(tmp_path: Path, capsys) -> None:
    dl = tmp_path / "dl"
    dtd_source(dl, {"train": 18, "val": 5, "test": 1})
    for p in (dl / "dtd" / "dtd" / "images").rglob("*_val_*.jpg"):  # a damaged download: the build stops at val200, after train800 was written
        p.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="1 of 1 tasks could not be prepared"):
        prepare_vtab(tmp_path, ["dtd"], download_dir=dl)
    out = capsys.readouterr().out
    assert "dtd: FAILED: dtd: example" in out and "of the 'validation' split cannot be read" in out
    task_dir = tmp_path / "vtab-1k" / "dtd"
    staging = staging_dir(task_dir)
    assert not task_dir.exists()
    staged = sorted((staging / "images" / "train").glob("*.png"))
    assert len(staged) == 800
    stamps = {p.name: p.stat().st_mtime_ns for p in staged}
    dtd_source(dl, {"train": 18, "val": 5, "test": 1})  # the download fixed
    prepare_vtab(tmp_path, ["dtd"], download_dir=dl)
    assert "dtd: resuming the unfinished build" in capsys.readouterr().out
    assert not staging.exists() and (task_dir / MARKER).is_file()
    assert {p.name: p.stat().st_mtime_ns for p in sorted((task_dir / "images" / "train").glob("*.png"))} == stamps
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    prepare_vtab(fresh, ["dtd"], download_dir=dl, log=lambda _: None)
    for name in ("train800", "val200", "test"):
        assert (task_dir / f"{name}.txt").read_text() == (fresh / "vtab-1k" / "dtd" / f"{name}.txt").read_text()


def test_foreign_folder_is_left_alone(tmp_path: Path, capsys) -> None:
    community = tmp_path / "vtab-1k" / "dtd"
    community.mkdir(parents=True)
    (community / "train800.txt").write_text("images/x.jpg 0\n")
    assert main(["vtab", "--root", str(tmp_path), "--tasks", "dtd", "--download-dir", str(tmp_path)]) == 0
    assert "not written by peftbench-prepare; left untouched" in capsys.readouterr().out
    assert (community / "train800.txt").read_text() == "images/x.jpg 0\n"


def test_missing_sources_fail_clearly_and_keep_completed_tasks(tmp_path: Path, capsys) -> None:
    dl = tmp_path / "dl"
    dtd_source(dl, {"train": 18, "val": 5, "test": 1})
    code = main(["vtab", "--root", str(tmp_path), "--tasks", "dtd", "eurosat", "--download-dir", str(dl)])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert "eurosat: FAILED" in out and "eurosat/2750/<class>/*.jpg" in out
    assert "1 of 2 tasks could not be prepared (eurosat)" in err
    assert (tmp_path / "vtab-1k" / "dtd" / MARKER).is_file()
    assert not (tmp_path / "vtab-1k" / "eurosat").exists()


def test_md5_checked_cifar_files_report_integrity_failure(tmp_path: Path, capsys) -> None:
    """torchvision checks CIFAR-100's md5 sums; files in the right format but other bytes are refused."""
    base = tmp_path / "dl" / "cifar-100-python"
    base.mkdir(parents=True)
    for name, n in (("train", 2000), ("test", 10)):
        batch = {"data": np.zeros((n, 3072), dtype=np.uint8), "fine_labels": [i % 100 for i in range(n)]}
        (base / name).write_bytes(pickle.dumps(batch))
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}))
    code = main(["vtab", "--root", str(tmp_path), "--tasks", "cifar100", "--download-dir", str(tmp_path / "dl")])
    out = capsys.readouterr().out
    assert code == 2
    assert "torchvision.datasets.CIFAR100 cannot read" in out and "corrupted" in out
    assert "cifar-100-python/{train,test,meta}" in out
    assert not (tmp_path / "vtab-1k" / "cifar").exists()


def test_tfds_only_task_without_tensorflow_datasets(tmp_path: Path) -> None:
    try:
        import tensorflow_datasets  # noqa: F401

        pytest.skip("tensorflow-datasets is installed; the message for its absence cannot be shown")
    except ImportError:
        pass
    with pytest.raises(DataError, match=r"1 of 1 tasks"):
        prepare_vtab(tmp_path, ["kitti"], log=lambda _: None)
    msgs: list[str] = []
    with pytest.raises(DataError):
        prepare_vtab(tmp_path, ["dmlab"], log=msgs.append)
    assert "needs tensorflow-datasets" in msgs[0] and "pip install 'peftbench[tfds]'" in msgs[0]
    with pytest.raises(DataError):
        prepare_vtab(tmp_path, ["kitti"], source="torchvision", log=msgs.append)
    assert "torchvision has no reader for this task's VTAB splits" in msgs[-1]


def test_bad_root_and_unknown_task(tmp_path: Path, capsys) -> None:
    assert main(["vtab", "--root", str(tmp_path / "nope")]) == 2
    assert "does not exist; create it" in capsys.readouterr().err
    assert main(["vtab", "--root", str(tmp_path), "--tasks", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert "unknown VTAB-1k task 'cifar10'; valid choices:" in err and "smallnorb_ele" in err
    with pytest.raises(UnknownNameError):
        prepare_vtab(tmp_path, ["dtd"], source="hub")


def test_recipe_sizes_match_the_protocol_test_sizes() -> None:
    """Where test is a tail of a split, the offsets reproduce the published test sizes."""
    source_sizes = {"eurosat": 27000, "resisc45": 31500, "dsprites_loc": 737280, "smallnorb_azi": 24300}
    for task, n in source_sizes.items():
        t = VTAB_TASKS[task]
        start, stop = t.test.bounds(n)
        assert stop - start == t.test_size
        v0, v1 = t.val200.bounds(n)
        assert v1 - v0 == 200 and (t.val200.split != "train" or v0 >= 800)
    assert VTAB_TASKS["cifar"].val200.bounds(50000) == (45000, 45200)
    assert VTAB_TASKS["oxford_iiit_pet"].val200.bounds(3680) == (2944, 3144)


def test_tfds_label_rules_on_tfds_shaped_examples() -> None:
    # CLEVR distance: the closest object's depth (pixel_coords[:, 2]) binned at 0, 8, 8.5, 9, 9.5, 10, 100
    clevr = {"objects": {"pixel_coords": np.array([[1, 2, 9.2], [3, 4, 12.0]]), "size": np.array([0, 1])}}
    assert TFDS_LABELS["clevr_dist"](clevr) == 3 and TFDS_LABELS["clevr_count"](clevr) == -1
    # KITTI: closest car/van/truck (type 0-2); pedestrians (type 3) ignored; no vehicle -> class 3
    kitti = {"objects": {"type": np.array([3, 0, 1]), "location": np.array([[0, 0, 2.0], [0, 0, 15.0], [0, 0, 30.0]])}}
    assert TFDS_LABELS["kitti"](kitti) == 1
    assert TFDS_LABELS["kitti"]({"objects": {"type": np.array([4]), "location": np.array([[0, 0, 1.0]])}}) == 3
    assert closest_bin(np.array([8.0]), [-100.0, 8.0, 20.0, 999.0]) == 0  # strict: 8.0 is not beyond 8
    assert TFDS_LABELS["dsprites_loc"]({"label_x_position": 31}) == 15
    assert TFDS_LABELS["dsprites_ori"]({"label_orientation": 39}) == 15
    assert TFDS_LABELS["dsprites_ori"]({"label_orientation": 3}) == 1


def test_pcam_without_h5py_names_the_missing_package(tmp_path: Path) -> None:
    try:
        import h5py  # noqa: F401

        pytest.skip("h5py is installed; the message for its absence cannot be shown")
    except ImportError:
        pass
    msgs: list[str] = []
    with pytest.raises(DataError, match="patch_camelyon"):
        prepare_vtab(tmp_path, ["pcam"], source="torchvision", log=msgs.append)
    assert "h5py is not found" in msgs[0] and "pip install 'peftbench[prepare]'" in msgs[0]
    assert not (tmp_path / "vtab-1k" / "patch_camelyon").exists()


def pcam_source(dl: Path, sizes: dict[str, int]) -> None:
    """``dl/pcam/camelyonpatch_level_2_split_<split>_{x,y}.h5`` as torchvision's PCAM reads them:
    ``x`` (N, H, W, 3) uint8 and ``y`` (N, 1, 1, 1); here 4 x 4 patches whose colour encodes the label."""
    h5py = pytest.importorskip("h5py")
    base = dl / "pcam"
    base.mkdir(parents=True)
    for split, n in sizes.items():
        labels = np.arange(n) % 2
        images = np.stack([np.full((4, 4, 3), _colour(int(y)), dtype=np.uint8) for y in labels])
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f.create_dataset("x", data=images)
        with h5py.File(base / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f.create_dataset("y", data=labels.reshape(n, 1, 1, 1).astype(np.uint8))


def test_pcam_from_the_original_h5_files(tmp_path: Path) -> None:
    dl = tmp_path / "dl"
    pcam_source(dl, {"train": 900, "valid": 250, "test": 24})  # val200 = validation[:200], test = test
    prepare_vtab(tmp_path, ["pcam"], download_dir=dl, log=lambda _: None)
    task_dir = tmp_path / "vtab-1k" / "patch_camelyon"
    _check_written(task_dir, "patch_camelyon", "validation", "test", 24)
    assert {y for _, y in _lines(task_dir, "train800")} == {0, 1}


# KMnP/vpt @ 4410440 : VTAB_SETUP.md, "TFDS version": the dataset versions VPT used (tfds 4.4.0+nightly)
VPT_TFDS_VERSIONS = {
    "cifar100": "3.0.2", "caltech101": "3.0.1", "dtd": "3.0.1", "oxford_flowers102": "2.1.1",
    "oxford_iiit_pet": "3.2.0", "svhn_cropped": "3.0.0", "sun397": "4.0.0", "patch_camelyon": "2.0.0",
    "eurosat": "2.0.0", "resisc45": "3.0.0", "diabetic_retinopathy_detection": "3.0.0", "clevr": "3.1.0",
    "dmlab": "2.0.1", "kitti": "3.2.0", "dsprites": "2.0.0", "smallnorb": "2.0.0",
}


def test_tfds_builds_ask_for_the_versions_vpt_used() -> None:
    for task in VTAB_TASKS.values():
        dataset = task.tfds_name.split("/")[0]  # sun397/tfds, eurosat/rgb, diabetic_retinopathy_detection/btgraham-300
        assert task.tfds_spec == f"{task.tfds_name}:{VPT_TFDS_VERSIONS[dataset]}", task.name
    assert {t.tfds_name.split("/")[0] for t in VTAB_TASKS.values()} == set(VPT_TFDS_VERSIONS)


def _fake_tfds(monkeypatch, builder) -> list[str]:
    """A stand-in ``tensorflow_datasets`` module whose ``builder`` records the requested ``name:version``."""
    import sys
    import types

    asked: list[str] = []
    module = types.ModuleType("tensorflow_datasets")

    def make(spec, data_dir=None):
        asked.append(spec)
        return builder(spec)

    module.builder = make
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return asked


def test_tfds_source_requests_and_records_the_pinned_version(monkeypatch, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from peftbench.prepare.vtab import TfdsSource

    class Builder:
        def __init__(self, spec):
            self.info = SimpleNamespace(version=spec.partition(":")[2], splits={})

        def download_and_prepare(self):
            pass

    asked = _fake_tfds(monkeypatch, Builder)
    described = TfdsSource(VTAB_TASKS["sun397"], tmp_path).describe()
    assert asked == ["sun397/tfds:4.0.0"]
    assert described["requested"] == "sun397/tfds:4.0.0" and described["version"] == "4.0.0"


def test_tfds_without_the_pinned_version_names_it(monkeypatch, tmp_path: Path) -> None:
    def missing(spec):
        raise AssertionError(f"Dataset dmlab cannot be loaded at version {spec.partition(':')[2]}, only: 2.0.2")

    _fake_tfds(monkeypatch, missing)
    msgs: list[str] = []
    with pytest.raises(DataError, match="1 of 1 tasks"):
        prepare_vtab(tmp_path, ["dmlab"], source="tfds", log=msgs.append)
    assert "has no dmlab:2.0.1" in msgs[0] and "VTAB_SETUP.md" in msgs[0]
    assert not (tmp_path / "vtab-1k" / "dmlab").exists()
