"""Decoded-image cache: a VTAB-1k split decoded once gives the batches and the training run of the uncached path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from peftbench.data import DataConfig, DatasetConfig, build_splits
from peftbench.data.cache import (
    CachedBatches,
    DecodedImageDataset,
    WaitClock,
    data_wait_fraction,
    decode_split,
    is_cacheable,
)
from peftbench.engine.loop import TrainerConfig, train_and_evaluate
from peftbench.engine.optim import OptimConfig
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_vit

CLASSES = 3


def write_vtab_task(root: Path, task: str = "dtd", n_train: int = 24, n_test: int = 9) -> DatasetConfig:
    """Noisy RGB PNGs of three brightness levels (learnable), not square so the resize matters."""
    rng = np.random.default_rng(0)
    folder = root / "vtab-1k" / task
    for split, n in {"train800val200": n_train, "train800": n_train, "val200": n_test, "test": n_test}.items():
        lines = []
        for i in range(n):
            label = i % CLASSES
            pixels = np.clip(rng.normal(60 + 70 * label, 40, size=(37, 45, 3)), 0, 255).astype(np.uint8)
            rel = f"images/{split}/{i}.png"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / rel)
            lines.append(f"{rel} {label}")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return DatasetConfig(name=task, suite="vtab", num_classes=CLASSES, folder=task, group="natural")


def vtab_splits(root: Path):
    dataset = write_vtab_task(root)
    data = DataConfig(root=str(root), image_size=32)
    return build_splits(dataset, data, "final", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_decoded_items_and_batches_equal_the_uncached_ones(tmp_path):
    splits = vtab_splits(tmp_path)
    assert is_cacheable(splits.train) and is_cacheable(splits.eval)
    cached, decision = decode_split(splits.train, torch.device("cpu"))
    assert decision.enabled and decision.nbytes == len(splits.train) * 3 * 32 * 32
    assert isinstance(cached, DecodedImageDataset) and cached.images.dtype == torch.uint8
    for i in (0, 5, len(splits.train) - 1):
        image, label = splits.train[i]
        assert torch.equal(cached[i][0], image) and cached[i][1] == label
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = DataLoader(splits.train, batch_size=5, shuffle=True, generator=g1)
    fast = CachedBatches(cached, 5, g2, torch.device("cpu"))
    assert len(plain) == len(fast)
    for _ in range(2):  # two epochs: the generator advances the same way
        for (xa, ya), (xb, yb) in zip(plain, fast, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(g1.get_state(), g2.get_state())


def test_random_transforms_are_not_cached(tmp_path):
    from torchvision import transforms as T

    from peftbench.data.readers import ImageListDataset

    write_vtab_task(tmp_path)
    base = tmp_path / "vtab-1k" / "dtd"
    entries = [(f"images/test/{i}.png", i % CLASSES) for i in range(3)]
    augmenting = ImageListDataset(base, entries, T.Compose([T.RandomCrop(16), T.ToTensor()]))
    assert not is_cacheable(augmenting)
    cached, decision = decode_split(augmenting, torch.device("cpu"))
    assert cached is None and not decision.enabled and "random" in decision.reason


def _train(splits, method: str, input_cache: bool, prefix_cache: bool = False):
    model = tiny_vit(num_classes=CLASSES)
    attach_method(model, build_method(method))
    torch.manual_seed(1)  # dropout inside the method draws from the global stream
    cfg = TrainerConfig(epochs=3, batch_size=8, eval_batch_size=16, lr=5e-3, warmup_epochs=1, progress=False,
                        input_cache=input_cache, prefix_cache=prefix_cache)
    records: list[dict] = []
    outcome = train_and_evaluate(model, splits.train, splits.eval, cfg, OptimConfig(), torch.device("cpu"), seed=0,
                                 log=records.append)
    return model, outcome, records


@pytest.mark.parametrize("method", ["lora", "full"])
def test_cached_and_uncached_training_are_identical(tmp_path, method):
    splits = vtab_splits(tmp_path)
    model_a, out_a, _ = _train(splits, method, input_cache=False)
    model_b, out_b, records = _train(splits, method, input_cache=True)
    assert out_a.input_pipeline["input_cache"]["enabled"] is False
    assert out_b.input_pipeline["input_cache"]["enabled"] is True
    assert out_b.input_pipeline["eval_input_cache"]["enabled"] is True  # the test split is decoded once too
    assert "eval_input_cache" not in out_a.input_pipeline
    assert out_a.accuracy == out_b.accuracy and out_a.final_train_loss == out_b.final_train_loss
    for (name, pa), (_, pb) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    # the final evaluation's timed batches (9 test images in batches of 16: one batch, the warm-up, so none)
    assert out_a.eval_infer_img_s is None and out_b.eval_infer_img_s is None
    assert out_b.data_wait_fraction is not None and 0.0 <= out_b.data_wait_fraction <= 1.0
    assert all("data_wait_s" in r for r in records if "train_loss" in r)
    json.dumps(out_b.input_pipeline)  # recorded in the result JSON as it is


def test_wait_clock_and_fraction():
    clock = WaitClock()
    assert list(clock.wrap([1, 2, 3])) == [1, 2, 3]
    assert len(clock.epochs) == 1 and clock.epochs[0] >= 0.0
    assert data_wait_fraction([5.0, 1.0, 3.0], [10.0, 4.0, 4.0]) == pytest.approx(0.5)  # first epoch left out
    assert data_wait_fraction([], []) is None


def test_only_fixed_size_deterministic_pipelines_are_cacheable(tmp_path):
    from torchvision import transforms as T

    from peftbench.data.readers import ImageListDataset

    base, entries = tmp_path, [("a.png", 0)]
    fixed = [T.Compose([T.Resize((16, 16)), T.ToTensor()]),
             T.Compose([T.Resize(20), T.CenterCrop(16), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])]
    varying = [T.Compose([T.Resize(16), T.ToTensor()]),  # the shorter side only: sizes differ
               T.Compose([T.Resize((16, 16)), T.RandomHorizontalFlip(), T.ToTensor()]),
               T.Compose([T.Resize((16, 16)), T.ToTensor(), T.RandomErasing()])]
    assert all(is_cacheable(ImageListDataset(base, entries, t)) for t in fixed)
    assert not any(is_cacheable(ImageListDataset(base, entries, t)) for t in varying)


def test_a_second_decoding_of_the_same_files_reuses_the_pixels_and_a_changed_file_does_not(tmp_path):
    splits = vtab_splits(tmp_path)
    first, d1 = decode_split(splits.train, torch.device("cpu"))
    again, d2 = decode_split(splits.train, torch.device("cpu"))
    assert not d1.reused and d2.reused and "reused" in d2.reason and d2.nbytes == d1.nbytes
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    # batches are gathered copies: training on them never writes into the kept pixels
    images, _ = again.batch(torch.arange(4), torch.device("cpu"))
    images.zero_()
    assert torch.equal(first.images, decode_split(splits.train, torch.device("cpu"))[0].images)

    # rewrite one training image with other pixels: its size / mtime change, so the split is decoded anew
    rel, _ = splits.train.entries[0]
    path = splits.train.base / rel
    Image.fromarray(np.full((37, 45, 3), 255, np.uint8)).save(path)
    fresh, d3 = decode_split(splits.train, torch.device("cpu"))
    assert not d3.reused
    assert torch.equal(fresh.images[0], torch.full((3, 32, 32), 255, dtype=torch.uint8))
    assert torch.equal(fresh.images[1:], first.images[1:])


def test_two_runs_in_one_process_train_identically_with_reused_pixels(tmp_path):
    splits = vtab_splits(tmp_path)
    model_a, out_a, _ = _train(splits, "lora", input_cache=True)
    model_b, out_b, _ = _train(splits, "lora", input_cache=True)
    assert not out_a.input_pipeline["input_cache"]["reused"] and out_b.input_pipeline["input_cache"]["reused"]
    assert out_b.input_pipeline["eval_input_cache"]["reused"]
    assert out_a.accuracy == out_b.accuracy and out_a.final_train_loss == out_b.final_train_loss
    for (name, pa), (_, pb) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
