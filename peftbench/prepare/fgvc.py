"""Write VPT's FGVC layout (``<root>/<folder>/{train,val,test}.json``) from the official downloads.

The official files give a train/test split; VPT split the official training set once more into train
and val and published the json files. With ``splits_dir`` (a folder holding VPT's ``train.json`` and
``val.json``, optionally ``test.json``) those are used after checking them against the official
files. Without it, val is a deterministic draw from the official training set:
``numpy.random.default_rng(seed).permutation`` over the training paths sorted by name, the first
``round(n_train * val / (train + val))`` of them (exactly VPT's val size for the real datasets) go to
val. Oxford Flowers has an official val split, which VPT uses as it is.

Sources (``--source``, repeatable; folders, tar / zip archives or single files):

==============  =====================================================================================
cub             CUB_200_2011.tgz or its folder: images.txt, image_class_labels.txt,
                train_test_split.txt, images/
nabirds         nabirds.tar.gz or its folder: the same three text files and images/
oxford_flowers  102flowers.tgz (jpg/), imagelabels.mat, setid.mat
stanford_dogs   images.tar (Images/), lists.tar (train_list.mat, test_list.mat)
stanford_cars   cars_train.tgz, cars_test.tgz, car_devkit.tgz (devkit/cars_train_annos.mat),
                cars_test_annos_withlabels.mat
==============  =====================================================================================

Extracted archives go to ``<root>/.peftbench-extract/<dataset>/``; the image folders are linked
into ``<root>/<folder>/`` by relative symbolic links, so nothing is copied.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from peftbench.errors import DataError, UnknownNameError
from peftbench.prepare.protocol import FGVC_DATASETS, FgvcDataset
from peftbench.prepare.writer import MARKER, write_json_atomic

Split = dict[str, int]  # image path (relative to the image folder) -> official class id

# what --source must provide, per dataset (messages and --help)
SOURCE_FILES = {
    "cub": "CUB_200_2011.tgz or its folder (images.txt, image_class_labels.txt, train_test_split.txt, images/)",
    "nabirds": "nabirds.tar.gz or its folder (images.txt, image_class_labels.txt, train_test_split.txt, images/)",
    "oxford_flowers": "102flowers.tgz (jpg/), imagelabels.mat and setid.mat",
    "stanford_dogs": "images.tar (Images/) and lists.tar (train_list.mat, test_list.mat)",
    "stanford_cars": "cars_train.tgz, cars_test.tgz, car_devkit.tgz (devkit/cars_train_annos.mat) and "
    "cars_test_annos_withlabels.mat",
}


class Official:
    """The official split of one dataset as read from its files, and the folders to link."""

    def __init__(self, train: Split, test: Split, links: dict[str, Path], val: Split | None = None) -> None:
        self.train, self.test, self.links, self.val = train, test, links, val


class Sources:
    """The user's ``--source`` items, archives extracted, searched by file name."""

    def __init__(self, items: list[Path], extract_dir: Path) -> None:
        self.roots: list[Path] = []
        self.files: list[Path] = []
        for item in items:
            item = Path(item).expanduser()
            if item.is_dir():
                self.roots.append(item)
            elif item.is_file() and (tarfile.is_tarfile(item) or zipfile.is_zipfile(item)):
                self.roots.append(_extract(item, extract_dir))
            elif item.is_file():
                self.files.append(item)
            else:
                raise DataError(f"--source {item} does not exist; pass the downloaded archive or its extracted folder")

    def find(self, name: str, what: str) -> Path:
        """The first file or folder called ``name`` in the sources (up to three levels down)."""
        for f in [*self.files, *self.roots]:
            if f.name == name:  # a file or folder given as --source itself
                return f
        for root in self.roots:
            for pattern in (name, f"*/{name}", f"*/*/{name}", f"*/*/*/{name}"):
                hits = sorted(p for p in root.glob(pattern) if not p.name.startswith("._"))
                if hits:
                    return hits[0]
        searched = ", ".join(str(p) for p in [*self.roots, *self.files]) or "(nothing)"
        raise DataError(f"{name} ({what}) not found in the sources ({searched}); add it with --source PATH")


def _extract(archive: Path, extract_dir: Path) -> Path:
    """Extract ``archive`` once into ``extract_dir/<archive name>/`` (staging folder + rename)."""
    dest = extract_dir / archive.name
    if dest.is_dir():
        return dest
    staging = extract_dir / f".{archive.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        else:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"cannot extract {archive}: {exc}; download it again") from None
    os.replace(staging, dest)
    return dest


def _table(path: Path) -> dict[str, str]:
    """``<id> <value>`` lines (CUB / NABirds metadata files) as a dict."""
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise DataError(f"{path}:{lineno}: expected '<image id> <value>', got {line!r}")
            out[parts[0]] = parts[1].strip()
    return out


def _birds(src: Sources) -> Official:
    images = src.find("images.txt", "image id -> path")
    labels = _table(src.find("image_class_labels.txt", "image id -> class id"))
    is_train = _table(src.find("train_test_split.txt", "image id -> 1 (train) / 0 (test)"))
    train, test = {}, {}
    for image_id, rel in _table(images).items():
        if image_id not in labels or image_id not in is_train:
            raise DataError(f"{images}: image id {image_id} has no class or split in the other metadata files")
        (train if is_train[image_id] == "1" else test)[rel] = int(labels[image_id])
    return Official(train, test, {"images": images.parent / "images"})


def _loadmat(path: Path) -> dict[str, Any]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"reading {path.name} needs scipy; install it with pip install 'peftbench[prepare]'") from None
    try:
        return loadmat(path, squeeze_me=True)
    except (ValueError, OSError, TypeError) as exc:
        raise DataError(f"cannot read {path}: {exc}; download it again") from None


def _flowers(src: Sources) -> Official:
    labels = np.atleast_1d(_loadmat(src.find("imagelabels.mat", "labels"))["labels"])
    setid = _loadmat(src.find("setid.mat", "official splits"))
    jpg = src.find("jpg", "image folder")

    def part(key: str) -> Split:
        return {f"jpg/image_{int(i):05d}.jpg": int(labels[int(i) - 1]) for i in np.atleast_1d(setid[key])}

    return Official(part("trnid"), part("tstid"), {"jpg": jpg}, val=part("valid"))


def _dogs(src: Sources) -> Official:
    def part(name: str) -> Split:
        path = src.find(name, "official split")
        mat = _loadmat(path)
        files, labels = np.atleast_1d(mat["file_list"]), np.atleast_1d(mat["labels"])
        if len(files) != len(labels):
            raise DataError(f"{path}: {len(files)} files but {len(labels)} labels; download lists.tar again")
        return {str(f): int(y) for f, y in zip(files, labels, strict=True)}

    return Official(part("train_list.mat"), part("test_list.mat"), {"Images": src.find("Images", "image folder")})


def _cars(src: Sources) -> Official:
    def part(name: str, folder: str) -> Split:
        ann = np.atleast_1d(_loadmat(src.find(name, "annotations"))["annotations"])
        return {f"{folder}/{a['fname']}": int(a["class"]) for a in ann}

    return Official(
        part("cars_train_annos.mat", "cars_train"),
        part("cars_test_annos_withlabels.mat", "cars_test"),
        {d: src.find(d, "image folder") for d in ("cars_train", "cars_test")},
    )


READERS: dict[str, Callable[[Sources], Official]] = {
    "cub": _birds,
    "nabirds": _birds,
    "oxford_flowers": _flowers,
    "stanford_dogs": _dogs,
    "stanford_cars": _cars,
}


def _vpt_splits(splits_dir: Path, official: Official, name: str) -> tuple[Split, Split, Split, dict[str, Any]]:
    """Read VPT's json files and check them against the official split; returns train, val, test, record."""
    from peftbench.data.readers import read_json_split

    vpt = {s: read_json_split(splits_dir / f"{s}.json") for s in ("train", "val")}
    pool = {**official.train, **(official.val or {})}
    id_map: dict[int, int] = {}  # official class id -> the id VPT's files use
    for s, split in vpt.items():
        unknown = [k for k in split if k not in pool]
        if unknown:
            raise DataError(
                f"{splits_dir / (s + '.json')}: {len(unknown)} paths are not official training images of {name} "
                f"(e.g. {unknown[0]!r}); these split files belong to another dataset or version"
            )
        for k, v in split.items():
            if id_map.setdefault(pool[k], v) != v:
                raise DataError(f"{splits_dir / (s + '.json')}: {k!r} has class id {v}, inconsistent with the other entries of its class")
    if set(vpt["train"]) & set(vpt["val"]):
        raise DataError(f"{splits_dir}: train.json and val.json share images; re-download VPT's split files")
    if (splits_dir / "test.json").is_file():
        test = read_json_split(splits_dir / "test.json")
        if set(test) != set(official.test):
            raise DataError(f"{splits_dir / 'test.json'}: its paths are not the official test set of {name}")
    else:
        test = {k: id_map.get(v, v) for k, v in official.test.items()}
    digest = {
        s: hashlib.sha256((splits_dir / f"{s}.json").read_bytes()).hexdigest()
        for s in ("train", "val", "test")
        if (splits_dir / f"{s}.json").is_file()
    }
    return vpt["train"], vpt["val"], test, {"split": "VPT's published split files", "sha256": digest}


def _own_split(official: Official, ds: FgvcDataset, seed: int) -> tuple[Split, Split, dict[str, Any]]:
    if official.val is not None:
        return official.train, official.val, {"split": "official train / val / test splits"}
    paths = sorted(official.train)
    n_val = round(len(paths) * ds.sizes["val"] / (ds.sizes["train"] + ds.sizes["val"]))
    order = np.random.default_rng(seed).permutation(len(paths))
    val = {paths[i]: official.train[paths[i]] for i in sorted(order[:n_val])}
    train = {p: official.train[p] for p in paths if p not in val}
    recipe = {
        "split": f"val = the first {n_val} of numpy.random.default_rng({seed}).permutation over the sorted "
        "official training paths; train = the rest (VPT's files were not given)",
    }
    return train, val, recipe


def _link(target: Path, name: str, actual: Path) -> None:
    link = target / name
    if link.exists() or link.is_symlink():
        if link.resolve() != actual.resolve():
            raise DataError(
                f"{link} exists and is not {actual}; move it away, or pass it as --source so it is used in place"
            )
        return
    link.symlink_to(os.path.relpath(actual.resolve(), target.resolve()), target_is_directory=True)


def prepare_fgvc(
    root: Path,
    name: str,
    sources: list[Path],
    splits_dir: Path | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> str:
    """Write ``<root>/<folder>/{train,val,test}.json`` for one FGVC dataset.

    Args:
        root: the data root (``data.root`` of the runs).
        name: ``cub``, ``nabirds``, ``oxford_flowers``, ``stanford_dogs``, ``stanford_cars`` (or an alias).
        sources: the official downloads: archives, single files, or extracted folders.
        splits_dir: a folder with VPT's ``train.json`` / ``val.json`` (``test.json`` optional).
        seed: seed of the val draw when ``splits_dir`` is not given.
        log: receives the summary line.

    Returns:
        ``prepared``, ``skipped`` (already complete) or ``kept`` (json files not written by this tool).
    """
    from peftbench.data.config import canonical_option

    canonical = canonical_option(f"fgvc/{name}").partition("/")[2]
    if canonical not in FGVC_DATASETS:
        raise UnknownNameError("FGVC dataset", name, FGVC_DATASETS)
    ds = FGVC_DATASETS[canonical]
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"--root {root} does not exist; create it (mkdir -p {root}) or pass an existing folder")
    target = root / ds.folder
    if (target / MARKER).is_file():
        log(f"{ds.name}: already prepared ({target}), skipped")
        return "skipped"
    ours = (target / "source.json").is_file()  # written first: a run of this tool was interrupted
    if not ours and any((target / f"{s}.json").exists() for s in ("train", "val", "test")):
        log(f"{ds.name}: {target} holds json files not written by peftbench-prepare; left untouched")
        return "kept"
    if not sources:
        raise DataError(
            f"{ds.name}: no --source given; pass the official downloads, one --source each (archives, files "
            f"or extracted folders): {SOURCE_FILES[ds.name]}"
        )
    if splits_dir is not None and not (Path(splits_dir) / "train.json").is_file():
        raise DataError(f"--splits {splits_dir} holds no train.json; pass the folder with VPT's json files for {ds.name}")
    official = READERS[ds.name](Sources(list(sources), root / ".peftbench-extract" / ds.name))
    if splits_dir is not None:
        train, val, test, recipe = _vpt_splits(Path(splits_dir), official, ds.name)
    else:
        train, val, recipe = _own_split(official, ds, seed)
        test = official.test
    target.mkdir(exist_ok=True)
    for entry, actual in official.links.items():
        if not actual.is_dir():
            raise DataError(f"{actual} is not a folder; the {ds.name} images are expected there")
        _link(target, entry, actual)
    counts = {"train": len(train), "val": len(val), "test": len(test)}
    write_json_atomic(
        target / "source.json",
        {"dataset": ds.name, "num_classes": ds.num_classes, "image_dir": ds.image_dir, **recipe,
         "sources": [str(p) for p in sources], "counts": counts, "vpt_sizes": ds.sizes},
    )
    for s, split in (("train", train), ("val", val), ("test", test)):
        write_json_atomic(target / f"{s}.json", dict(sorted(split.items())))
    write_json_atomic(target / MARKER, {"dataset": ds.name, "counts": counts})
    differs = "" if counts == ds.sizes else f" (VPT's sizes: {ds.sizes}; verify will report the difference)"
    log(f"{ds.name}: prepared {target} -> " + ", ".join(f"{k} {v}" for k, v in counts.items()) + differs)
    return "prepared"
