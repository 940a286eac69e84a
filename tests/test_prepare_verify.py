"""peftbench-prepare verify: a correct tree passes; each test breaks one thing and checks that exactly
the check meant for it reports it. VTAB trees hold full-size train lists (1000 tiny PNGs) and a short
test.txt (checked with --partial-test semantics) unless the test size itself is under test."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from peftbench.cli.prepare import main
from peftbench.errors import DataError, UnknownNameError
from peftbench.prepare.protocol import FGVC_DATASETS, VTAB_TASKS
from peftbench.prepare.verify import (
    FGVC_CHECKS,
    VTAB_CHECKS,
    FgvcContext,
    VtabContext,
    verify,
    verify_fgvc_dataset,
    verify_vtab_task,
)

TASK = VTAB_TASKS["eurosat"]  # 10 classes


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value % 256, dtype=np.uint8)).save(path)


def _write_list(task_dir: Path, name: str, rows: list[tuple[str, int]]) -> None:
    (task_dir / f"{name}.txt").write_text("".join(f"{p} {y}\n" for p, y in rows))


def _rows(task_dir: Path, name: str) -> list[tuple[str, int]]:
    out = []
    for line in (task_dir / f"{name}.txt").read_text().splitlines():
        p, y = line.rsplit(maxsplit=1)
        out.append((p, int(y)))
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A correct eurosat tree: 800 + 200 training PNGs, 20 test PNGs, every class present."""
    task_dir = tmp_path_factory.mktemp("pristine") / "vtab-1k" / "eurosat"
    rows = {}
    for split, n in (("train", 1000), ("test", 20)):
        rows[split] = []
        for i in range(n):
            rel = f"images/{split}/{i:06d}.png"
            _png(task_dir / rel, i)
            rows[split].append((rel, i % 10))
    _write_list(task_dir, "train800", rows["train"][:800])
    _write_list(task_dir, "val200", rows["train"][800:])
    _write_list(task_dir, "train800val200", rows["train"])
    _write_list(task_dir, "test", rows["test"])
    return task_dir


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    task_dir = tmp_path / "vtab-1k" / "eurosat"
    shutil.copytree(pristine, task_dir)
    return task_dir


def _problems(task_dir: Path, **kw) -> list[str]:
    kw.setdefault("partial_test", True)
    return verify_vtab_task(task_dir, TASK, **kw).problems


def test_correct_tree_passes(tree: Path, capsys) -> None:
    assert _problems(tree) == []
    assert main(["verify", "--root", str(tree.parents[1]), "--partial"]) == 0
    out = capsys.readouterr().out
    assert "vtab/eurosat: OK (train800 800, val200 200, train800val200 1000, test 20)" in out
    assert "1 of 1 tasks OK" in out


def test_missing_list_file(tree: Path) -> None:
    (tree / "val200.txt").unlink()
    assert _problems(tree) == ["val200.txt is missing"]


def test_wrong_train800_size(tree: Path) -> None:
    rows = _rows(tree, "train800")
    _write_list(tree, "train800", rows[:799])
    assert "train800.txt has 799 entries, the protocol has 800" in _problems(tree)


def test_label_out_of_range(tree: Path) -> None:
    rows = _rows(tree, "test")
    rows[3] = (rows[3][0], 10)
    _write_list(tree, "test", rows)
    assert _problems(tree) == ["test.txt: 1 labels outside [0, 10): line 4 label 10"]


def test_malformed_line(tree: Path) -> None:
    with (tree / "test.txt").open("a") as fh:
        fh.write("images/test/000000.png seven\n")
    # reported once, by line number; the unparsable line takes part in no other check
    assert _problems(tree) == [
        "test.txt: 1 lines are not '<path> <label>': line 21 'images/test/000000.png seven'"
    ]


def test_duplicate_path_in_a_list(tree: Path) -> None:
    rows = _rows(tree, "test")
    _write_list(tree, "test", rows + rows[:2])
    assert _problems(tree) == ["test.txt: 2 paths are listed more than once"]


def test_train800_and_val200_overlap(tree: Path) -> None:
    train, val = _rows(tree, "train800"), _rows(tree, "val200")
    val[0] = train[0]
    _write_list(tree, "val200", val)
    problems = _problems(tree)
    assert "train800 and val200 share 1 images: images/train/000000.png" in problems
    # the union no longer equals train800val200 either: one of its entries is now in neither
    assert any(p.startswith("train800val200 is not the union") and "1 extra entries" in p for p in problems)


def test_union_is_not_train800val200(tree: Path) -> None:
    both = _rows(tree, "train800val200")
    both[5] = (both[5][0], (both[5][1] + 1) % 10)  # same image, other label
    _write_list(tree, "train800val200", both)
    (problem,) = _problems(tree)
    assert problem.startswith("train800val200 is not the union of train800 and val200: 1 entries missing")
    assert "images/train/000005.png 5" in problem and "1 extra entries (images/train/000005.png 6)" in problem


def test_test_image_among_training_images(tree: Path) -> None:
    test = _rows(tree, "test")
    test[0] = ("images/train/000900.png", 0)
    _write_list(tree, "test", test)
    assert _problems(tree) == ["1 test images are also training images: images/train/000900.png"]


def test_test_size_against_the_protocol(tree: Path) -> None:
    problems = _problems(tree, partial_test=False)
    assert (
        "test.txt has 20 entries, the protocol has 5400 "
        "(a tree built on part of the test split passes with --partial-test)"
    ) in problems
    rows = [(f"images/test/{i:06d}.png", i % 10) for i in range(5400)]
    _write_list(tree, "test", rows)
    assert _problems(tree, partial_test=False, check_images=False) == []
    _write_list(tree, "test", rows[:5399])
    assert _problems(tree, partial_test=False, check_images=False) == [
        "test.txt has 5399 entries, the protocol has 5400 "
        "(a tree built on part of the test split passes with --partial-test)"
    ]


def test_missing_classes(tree: Path) -> None:
    names = ("train800", "val200", "train800val200", "test")
    rows = {s: [(p, 0 if y == 9 else y) for p, y in _rows(tree, s)] for s in names}
    rows["test"] = rows["test"] + [(f"images/test/{i:06d}.png", 1) for i in range(20, 5400)]
    for name, r in rows.items():
        _write_list(tree, name, r)
    assert _problems(tree, partial_test=False, check_images=False) == ["1 of the 10 classes never occur: 9"]


def test_missing_image(tree: Path) -> None:
    (tree / "images" / "train" / "000017.png").unlink()
    assert _problems(tree) == ["1 listed images are missing: images/train/000017.png"]
    assert _problems(tree, check_images=False) == []


def test_undecodable_image(tree: Path) -> None:
    path = tree / "images" / "test" / "000004.png"
    path.write_bytes(path.read_bytes()[:40])  # truncated PNG
    assert _problems(tree) == ["1 images cannot be decoded: images/test/000004.png"]


def test_cli_exit_codes_and_messages(tree: Path, capsys) -> None:
    root = tree.parents[1]
    (tree / "images" / "train" / "000017.png").unlink()
    assert main(["verify", "--root", str(root), "--suite", "vtab", "--tasks", "eurosat", "--partial"]) == 1
    out = capsys.readouterr().out
    assert "vtab/eurosat: FAILED" in out and "  - 1 listed images are missing" in out
    assert "failed: eurosat" in out
    assert main(["verify", "--root", str(root), "--tasks", "cifar10"]) == 2
    assert "unknown task 'cifar10'; valid choices:" in capsys.readouterr().err
    assert main(["verify", "--root", str(root / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = root / "empty"
    empty.mkdir()
    assert main(["verify", "--root", str(empty)]) == 2
    assert "no prepared task found below" in capsys.readouterr().err
    # a named task whose folder is absent is a failed task, not a crash
    assert main(["verify", "--root", str(root), "--tasks", "dtd", "--partial"]) == 1
    assert "does not exist" in capsys.readouterr().out
    with pytest.raises(UnknownNameError):
        verify(root, suite="imagenet")
    with pytest.raises(DataError):
        verify(empty)


# ---- FGVC ----------------------------------------------------------------------------------------

FLOWERS = FGVC_DATASETS["oxford_flowers"]  # 102 classes, images below the dataset folder


@pytest.fixture
def fgvc(tmp_path: Path) -> Path:
    """Oxford Flowers in VPT's layout with one image per class and split (ids 1..102)."""
    folder = tmp_path / FLOWERS.folder
    for s, offset in (("train", 0), ("val", 1000), ("test", 2000)):
        mapping = {}
        for c in range(1, 103):
            rel = f"jpg/image_{offset + c:05d}.jpg"
            _png(folder / rel, c)
            mapping[rel] = c
        (folder / f"{s}.json").write_text(json.dumps(mapping))
    return folder


def _fgvc_problems(folder: Path, **kw) -> list[str]:
    kw.setdefault("partial", True)
    return verify_fgvc_dataset(folder, FLOWERS, **kw).problems


def _load(folder: Path, s: str) -> dict[str, int]:
    return json.loads((folder / f"{s}.json").read_text())


def test_fgvc_correct_tree_passes(fgvc: Path, capsys) -> None:
    assert _fgvc_problems(fgvc) == []
    assert main(["verify", "--root", str(fgvc.parent), "--suite", "fgvc", "--partial"]) == 0
    assert "fgvc/oxford_flowers: OK (train 102, val 102, test 102)" in capsys.readouterr().out


def test_fgvc_sizes_against_vpt(fgvc: Path) -> None:
    assert _fgvc_problems(fgvc, partial=False, check_images=False) == [
        "train.json has 102 entries, VPT's split has 1020",
        "val.json has 102 entries, VPT's split has 1020",
        "test.json has 102 entries, VPT's split has 6149",
    ]
    for s, n, off in (("train", 1020, 0), ("val", 1020, 10000), ("test", 6149, 20000)):
        mapping = {f"jpg/image_{off + i:05d}.jpg": i % 102 + 1 for i in range(n)}
        (fgvc / f"{s}.json").write_text(json.dumps(mapping))
    assert _fgvc_problems(fgvc, partial=False, check_images=False) == []


def test_fgvc_wrong_class_count(fgvc: Path) -> None:
    val = _load(fgvc, "val")
    val["jpg/image_01001.jpg"] = 103
    (fgvc / "val.json").write_text(json.dumps(val))
    assert _fgvc_problems(fgvc) == ["the json files hold 103 distinct class ids, the dataset has 102"]


def test_fgvc_split_overlap(fgvc: Path) -> None:
    test = _load(fgvc, "test")
    test["jpg/image_00001.jpg"] = 1
    (fgvc / "test.json").write_text(json.dumps(test))
    assert _fgvc_problems(fgvc) == ["train and test share 1 images: jpg/image_00001.jpg"]


def test_fgvc_train_lacks_a_class(fgvc: Path) -> None:
    train = _load(fgvc, "train")
    train["jpg/image_00007.jpg"] = 8
    (fgvc / "train.json").write_text(json.dumps(train))
    assert _fgvc_problems(fgvc) == []  # --partial does not ask every split for every class
    problems = _fgvc_problems(fgvc, partial=False, check_images=False)
    assert "train.json lacks 1 classes: ids 7" in problems


def test_fgvc_bad_json_and_non_integer_id(fgvc: Path) -> None:
    (fgvc / "val.json").write_text("{not json")
    assert _fgvc_problems(fgvc) == [
        "val.json: not valid JSON (line 1: Expecting property name enclosed in double quotes)"
    ]
    (fgvc / "val.json").write_text(json.dumps({"jpg/image_01001.jpg": "1"}))
    assert "val.json: 1 class ids are not integers: jpg/image_01001.jpg" in _fgvc_problems(fgvc)


def test_fgvc_missing_and_broken_images(fgvc: Path) -> None:
    (fgvc / "jpg" / "image_02005.jpg").unlink()
    (fgvc / "jpg" / "image_00003.jpg").write_bytes(b"not an image")
    assert _fgvc_problems(fgvc) == [
        "1 listed images are missing: jpg/image_02005.jpg",
        "1 images cannot be decoded: jpg/image_00003.jpg",
    ]


# ---- the check tables ----------------------------------------------------------------------------
# Every row is a function of the parsed files, so these contexts live in memory (no images are written).
# The break for each row must make that row, and no other, report a problem.

SMALL_TASK = dataclasses.replace(TASK, test_size=20)  # full-size train lists, a 20-image test split
SMALL_FGVC = dataclasses.replace(FLOWERS, num_classes=3, sizes={"train": 6, "val": 3, "test": 6})


def _vtab_ctx(task_dir: Path) -> VtabContext:
    rows = [(f"images/{i:06d}.png", i % 10) for i in range(1020)]
    lists = {
        "train800": rows[:800],
        "val200": rows[800:1000],
        "train800val200": rows[:1000],
        "test": rows[1000:],
    }
    return VtabContext(task_dir, SMALL_TASK, lists, partial_test=False, check_images=False)


def _fgvc_ctx(folder: Path) -> FgvcContext:
    splits = {s: {f"{s}/{i}.jpg": i % 3 + 1 for i in range(n)} for s, n in SMALL_FGVC.sizes.items()}
    return FgvcContext(folder, SMALL_FGVC, splits, partial=False, check_images=False)


def _lists(ctx: VtabContext, **lists: list[tuple[str, int]]) -> VtabContext:
    return dataclasses.replace(ctx, lists={**ctx.lists, **lists})


def _splits(ctx: FgvcContext, **splits: dict[str, int]) -> FgvcContext:
    return dataclasses.replace(ctx, splits={**ctx.splits, **splits})


def _relabel(entries: list[tuple[str, int]], i: int) -> list[tuple[str, int]]:
    return entries[:i] + [(entries[i][0], (entries[i][1] + 1) % 10)] + entries[i + 1 :]


def _train(c: VtabContext) -> list[tuple[str, int]]:
    return c.lists["train800"]


def _val(c: VtabContext) -> list[tuple[str, int]]:
    return c.lists["val200"]


VTAB_BREAKS: dict[str, Callable[[VtabContext], VtabContext]] = {
    # train800val200 shrinks with train800 so that the union still holds
    "train_sizes": lambda c: _lists(c, train800=_train(c)[:799], train800val200=_train(c)[:799] + _val(c)),
    "test_size": lambda c: _lists(c, test=c.lists["test"][:19]),
    # train800val200 lists the shared image twice (the readers, not the rows, count repeats), so the union
    # and the sizes still hold
    "train_val_disjoint": lambda c: _lists(
        c, val200=_train(c)[:1] + _val(c)[1:], train800val200=_train(c) + _train(c)[:1] + _val(c)[1:]
    ),
    "train800val200_union": lambda c: _lists(c, train800val200=_relabel(c.lists["train800val200"], 5)),
    "test_not_in_training": lambda c: _lists(c, test=_train(c)[:1] + c.lists["test"][1:]),
    # class 9 becomes class 0 in every list
    "class_coverage": lambda c: _lists(c, **{n: [(p, y % 9) for p, y in e] for n, e in c.lists.items()}),
    "images": lambda c: dataclasses.replace(c, check_images=True),  # nothing below task_dir
}

FGVC_BREAKS: dict[str, Callable[[FgvcContext], FgvcContext]] = {
    "split_sizes": lambda c: _splits(c, val={"val/0.jpg": 1, "val/1.jpg": 2}),
    # test/0.jpg becomes train/0.jpg (same class), so the sizes and classes stay right
    "splits_disjoint": lambda c: _splits(
        c, test={"train/0.jpg" if p == "test/0.jpg" else p: y for p, y in c.splits["test"].items()}
    ),
    "class_count": lambda c: _splits(c, val={**c.splits["val"], "val/0.jpg": 4}),
    # train loses class 3; val and test keep it, so the id count is still right
    "class_coverage": lambda c: _splits(c, train={p: y % 3 or 1 for p, y in c.splits["train"].items()}),
    "images": lambda c: dataclasses.replace(c, check_images=True),  # nothing below the folder
}


def test_check_tables_have_unique_names_and_one_break_per_row() -> None:
    for table, breaks in ((VTAB_CHECKS, VTAB_BREAKS), (FGVC_CHECKS, FGVC_BREAKS)):
        names = [name for name, _ in table]
        assert len(names) == len(set(names))
        assert names == list(breaks)


@pytest.mark.parametrize(
    ("suite", "row"), [("vtab", n) for n in VTAB_BREAKS] + [("fgvc", n) for n in FGVC_BREAKS]
)
def test_each_check_row_fires_alone(suite: str, row: str, tmp_path: Path) -> None:
    if suite == "vtab":
        table, clean = VTAB_CHECKS, _vtab_ctx(tmp_path)
        broken = VTAB_BREAKS[row](clean)
    else:
        table, clean = FGVC_CHECKS, _fgvc_ctx(tmp_path)
        broken = FGVC_BREAKS[row](clean)
    assert {name: fn(clean) for name, fn in table} == {name: [] for name, _ in table}
    fired = [name for name, fn in table if fn(broken)]
    assert fired == [row]


def _unique_png(path: Path, i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[0, 0], pixels[0, 1] = i % 256, i // 256  # every image differs
    Image.fromarray(pixels).save(path)


@pytest.fixture
def split_folders(tmp_path: Path) -> Path:
    """The widely shared layout: each list names its own copies (images/<split>/<name>)."""
    task_dir = tmp_path / "vtab-1k" / "eurosat"
    train = [(f"{i:06d}.png", i % 10) for i in range(1000)]
    test = [(f"t{i:05d}.png", i % 10) for i in range(20)]
    lists = {"train800": train[:800], "val200": train[800:], "train800val200": train, "test": test}
    for split, rows in lists.items():
        for name, _ in rows:
            i = int(Path(name).stem.lstrip("t")) + (5000 if name.startswith("t") else 0)
            _unique_png(task_dir / "images" / split / name, i)
        _write_list(task_dir, split, [(f"images/{split}/{name}", y) for name, y in rows])
    return task_dir


@pytest.mark.parametrize("check_images", [True, False])
def test_a_tree_with_one_image_folder_per_split_is_compared_by_image(split_folders: Path, check_images) -> None:
    assert _problems(split_folders, check_images=check_images) == []
    leaked = _rows(split_folders, "test")
    shutil.copy(split_folders / "images/train800val200/000900.png", split_folders / "images/test/t00000.png")
    if not check_images:  # without reading images, the file name within the split folder identifies it
        (split_folders / "images/test/t00000.png").rename(split_folders / "images/test/000900.png")
        leaked[0] = ("images/test/000900.png", leaked[0][1])
        _write_list(split_folders, "test", leaked)
    assert _problems(split_folders, check_images=check_images) == [
        f"1 test images are also training images: {leaked[0][0]}"]
