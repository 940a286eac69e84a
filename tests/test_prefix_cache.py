"""Frozen-prefix caching: same accuracy and (float-noise) same weights as training through the whole ViT."""

from __future__ import annotations

import pytest
import timm
import torch

from peftbench.data.cache import DecodedImageDataset
from peftbench.engine.loop import TrainerConfig, train_and_evaluate
from peftbench.engine.optim import OptimConfig
from peftbench.engine.prefix_cache import build_train_inputs, frozen_prefix
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.test_input_cache import CLASSES, vtab_splits
from tests.tiny_models import VIT_KWARGS, tiny_vit


def _prepared(method: str, options: dict | None = None, **vit_kw):
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=CLASSES, **{**VIT_KWARGS, **vit_kw})
    attach_method(model, build_method(method, options))
    return model


def _inputs(model, prefix_cache: bool = True):
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (10, 3, 32, 32), generator=g, dtype=torch.uint8)
    data = DecodedImageDataset(pixels, torch.arange(10) % CLASSES, torch.full((3,), 0.5), torch.full((3,), 0.5))
    return build_train_inputs(model, data, 4, 8, torch.Generator().manual_seed(0), torch.device("cpu"), None,
                              prefix_cache=prefix_cache)


@pytest.mark.parametrize(
    ("method", "options", "through", "trained_from"),
    [("linear", None, "pre_logits", "head"), ("partial_k", {"k": 1}, "blocks[1]", "blocks[2]")],
)
def test_split_points_follow_the_trainable_parameters(method, options, through, trained_from):
    record = _inputs(_prepared(method, options)).record["prefix_cache"]
    assert record["enabled"] and record["cached_through"] == through and record["trained_from"] == trained_from


@pytest.mark.parametrize(
    ("method", "vit_kw", "reason"),
    [
        ("lora", {}, "blocks[0]"),  # trainable wrappers in the first block: nothing frozen to cache
        ("lst", {}, "'blocks'"),  # the side network reads every block
        ("linear", {"pos_drop_rate": 0.1}, "'stem'"),  # random in training mode
    ],
)
def test_unsafe_or_useless_prefixes_are_refused(method, vit_kw, reason):
    options = {"reduction_factor": 4} if method == "lst" else None
    model = _prepared(method, options, **vit_kw)
    split = frozen_prefix(model)
    assert isinstance(split, str) and reason in split
    record = _inputs(model).record["prefix_cache"]
    assert record["enabled"] is False and reason in record["reason"]


def test_the_prefix_stops_at_the_first_random_block():
    model = _prepared("linear", drop_path_rate=0.1)  # drop-path rates 0, 0.05, 0.1 over the three blocks
    record = _inputs(model).record["prefix_cache"]
    assert record["enabled"] and record["cached_through"] == "blocks[0]" and record["trained_from"] == "blocks[1]"


def test_the_trainer_option_disables_it():
    record = _inputs(_prepared("linear"), prefix_cache=False).record["prefix_cache"]
    assert record == {"enabled": False, "reason": "disabled (trainer.prefix_cache=false)"}


def test_cached_prefix_batches_give_the_full_forward():
    model = _prepared("partial_k", {"k": 1}).eval()
    inputs = _inputs(model)
    reference = _inputs(model, prefix_cache=False)
    for (feats, ya), (images, yb) in zip(inputs.batches, reference.batches, strict=True):
        assert torch.equal(ya, yb)
        torch.testing.assert_close(inputs.forward(feats), model(images), rtol=1e-5, atol=1e-5)


def _train(splits, method: str, options: dict | None, prefix_cache: bool):
    model = tiny_vit(num_classes=CLASSES)
    attach_method(model, build_method(method, options))
    cfg = TrainerConfig(epochs=4, batch_size=8, eval_batch_size=16, lr=5e-3, warmup_epochs=1, progress=False,
                        prefix_cache=prefix_cache)
    outcome = train_and_evaluate(model, splits.train, splits.eval, cfg, OptimConfig(), torch.device("cpu"), seed=0)
    return model, outcome


@pytest.mark.parametrize(("method", "options"), [("linear", None), ("partial_k", {"k": 2})])
def test_training_on_cached_activations_matches_the_uncached_run(tmp_path, method, options):
    splits = vtab_splits(tmp_path)
    model_a, out_a = _train(splits, method, options, prefix_cache=False)
    model_b, out_b = _train(splits, method, options, prefix_cache=True)
    assert out_a.input_pipeline["prefix_cache"]["enabled"] is False
    assert out_b.input_pipeline["prefix_cache"]["enabled"] is True
    assert out_a.accuracy == out_b.accuracy
    assert out_b.final_train_loss == pytest.approx(out_a.final_train_loss, rel=1e-4)
    trained = [n for n, p in model_a.named_parameters() if p.requires_grad]
    assert trained
    params_b = dict(model_b.named_parameters())
    for name, p in model_a.named_parameters():
        torch.testing.assert_close(params_b[name], p, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_a_run_records_the_decisions_and_caching_does_not_change_its_result(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.tiny_data import embedded_tiny

    embedded_tiny(tmp_path / "data")  # the small copy of the embedded task (tests/tiny_data.py)
    results = {}
    for flag in ("true", "false"):
        out = tmp_path / f"results_{flag}"
        proc = subprocess.run(
            [sys.executable, "-m", "peftbench.cli.train", "method=linear", "trainer.epochs=2", "trainer.warmup_epochs=1",
             "trainer.progress=false", "trainer.device=cpu", f"trainer.prefix_cache={flag}",
             f"trainer.input_cache={flag}", f"paths.results_dir={out}", f"data.root={tmp_path / 'data'}"],
            capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        (path,) = out.rglob("result.json")
        results[flag] = json.loads(path.read_text())
    on, off = results["true"], results["false"]
    assert on["input_pipeline"]["input_cache"]["enabled"] and on["input_pipeline"]["prefix_cache"]["enabled"]
    assert not off["input_pipeline"]["input_cache"]["enabled"] and not off["input_pipeline"]["prefix_cache"]["enabled"]
    assert on["config_hash"] == off["config_hash"]  # a cache is how a run is computed, not what
    assert on["metrics"]["accuracy"] == off["metrics"]["accuracy"]
    assert on["metrics"]["final_train_loss"] == pytest.approx(off["metrics"]["final_train_loss"], rel=1e-4)
    for r in (on, off):
        assert 0.0 <= r["metrics"]["data_wait_fraction"] <= 1.0


def test_periodic_evaluations_on_the_cached_prefix_match_and_keep_the_random_stream(tmp_path):
    splits = vtab_splits(tmp_path)
    runs = {}
    for flag in (False, True):
        # drop-path 0 / 0.1 / 0.2: the prefix ends at blocks[0]; the random blocks after it draw from the global
        # stream, which must advance as in the uncached run (evaluation loaders draw a seed from it)
        model = _prepared("partial_k", {"k": 1}, drop_path_rate=0.2)
        torch.manual_seed(5)
        cfg = TrainerConfig(epochs=4, batch_size=8, eval_batch_size=16, lr=5e-3, warmup_epochs=1, progress=False,
                            eval_every=1, prefix_cache=flag)
        outcome = train_and_evaluate(model, splits.train, splits.eval, cfg, OptimConfig(), torch.device("cpu"), seed=0)
        runs[flag] = (model, outcome)
    (model_a, out_a), (model_b, out_b) = runs[False], runs[True]
    assert out_b.input_pipeline["prefix_cache"]["trained_from"] == "blocks[1]"
    assert out_b.input_pipeline["eval_prefix_cache"]["enabled"] and "eval_prefix_cache" not in out_a.input_pipeline
    assert [h["eval_accuracy"] for h in out_a.eval_history] == [h["eval_accuracy"] for h in out_b.eval_history]
    assert len(out_b.eval_history) == 4
    params_b = dict(model_b.named_parameters())
    for name, p in model_a.named_parameters():
        torch.testing.assert_close(params_b[name], p, rtol=1e-4, atol=1e-5, msg=name)
