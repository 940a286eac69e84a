"""The training loop, schedule and measurements on a tiny real ViT and in-memory tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from peftbench.engine.loop import TrainerConfig, evaluate, resolve_device, train_and_evaluate
from peftbench.engine.measure import inference_throughput
from peftbench.engine.optim import OptimConfig, build_optimizer, lr_at
from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_vit


def _separable(n: int = 64, seed: int = 0) -> TensorDataset:
    """Two classes that differ by image brightness: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randn(n, 3, 32, 32, generator=g) * 0.1 + (labels.float() * 2 - 1).view(-1, 1, 1, 1)
    return TensorDataset(images, labels)


def _cfg(**kw) -> TrainerConfig:
    base = dict(epochs=4, batch_size=16, eval_batch_size=32, lr=1e-2, warmup_epochs=1, progress=False)
    return TrainerConfig(**{**base, **kw})


def test_schedule_warms_up_then_follows_a_cosine():
    kw = dict(total_steps=100, warmup_steps=10, lr=1.0, warmup_lr=0.0, min_lr=0.0)
    assert lr_at(0, **kw) == 0.0
    assert lr_at(5, **kw) == pytest.approx(0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(55, **kw) == pytest.approx(0.5)
    assert lr_at(100, **kw) == pytest.approx(0.0, abs=1e-12)
    values = [lr_at(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_optimizer_holds_exactly_the_given_params_and_sgd_works():
    model = tiny_vit()
    attach_method(model, build_method("linear"))
    params = [p for p in model.parameters() if p.requires_grad]
    for name in ("adamw", "sgd"):
        opt = build_optimizer(params, OptimConfig(name=name), lr=0.1, weight_decay=0.0)
        assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in params)
    with pytest.raises(ConfigError, match="adamw, sgd"):
        OptimConfig(name="adam")


def test_training_learns_and_reports_last_epoch_accuracy():
    torch.manual_seed(0)
    model = tiny_vit(num_classes=2)
    attach_method(model, build_method("full"))
    data = _separable()
    records: list[dict] = []
    out = train_and_evaluate(model, data, data, _cfg(eval_every=2), OptimConfig(), torch.device("cpu"), 0,
                             log=records.append)
    assert out.status == "success"
    assert out.epochs_completed == 4
    assert out.accuracy == evaluate(model, data, 32, torch.device("cpu"), None)
    assert out.accuracy > 90.0
    assert out.train_img_s and out.train_img_s > 0
    assert out.peak_train_mem_mb > 0 and out.peak_train_mem_source
    assert [r["epoch"] for r in records if "train_loss" in r] == [1, 2, 3, 4]
    # the periodic evaluation is kept apart from the final one
    assert [h["epoch"] for h in out.eval_history] == [2, 4]


def test_non_finite_loss_stops_the_run_as_diverged():
    model = tiny_vit(num_classes=2)
    attach_method(model, build_method("linear"))
    data = _separable()
    data.tensors[0][3] = float("nan")  # one poisoned image makes the loss NaN
    out = train_and_evaluate(model, data, data, _cfg(), OptimConfig(), torch.device("cpu"), 0)
    assert out.status == "diverged"
    assert out.accuracy is None
    assert "non-finite loss" in out.message


def test_same_seed_same_result():
    accs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = tiny_vit(num_classes=2)
        attach_method(model, build_method("linear"))
        out = train_and_evaluate(model, _separable(), _separable(seed=1), _cfg(epochs=2), OptimConfig(),
                                 torch.device("cpu"), 3)
        accs.append((out.accuracy, out.final_train_loss))
    assert accs[0] == accs[1]


def test_trainer_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="precision"):
        TrainerConfig(precision="fp8")
    with pytest.raises(ConfigError, match="warmup_epochs"):
        TrainerConfig(epochs=5, warmup_epochs=10)
    with pytest.raises(ConfigError, match="trainer.infer_iters must be >= 0"):
        TrainerConfig(infer_iters=-1)
    with pytest.raises(ConfigError, match="trainer.infer_warmup must be >= 0"):
        TrainerConfig(infer_warmup=-1)
    with pytest.raises(ConfigError, match="valid: auto, cpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_measurements_are_real_numbers():
    model = tiny_vit().eval()
    img_s = inference_throughput(model, torch.randn(8, 3, 32, 32), torch.device("cpu"), iters=2)
    assert math.isfinite(img_s) and img_s > 0


def test_the_final_evaluation_times_its_batches_after_the_first():
    model = tiny_vit(num_classes=2)
    attach_method(model, build_method("lora"))
    data = _separable(64)
    timing: list[tuple[int, float]] = []
    acc = evaluate(model, data, 24, torch.device("cpu"), None, timing=timing)
    assert 0.0 <= acc <= 100.0
    assert [n for n, _ in timing] == [24, 16] and all(t > 0 for _, t in timing)  # batches 2 and 3 of 24, 24, 16
    out = train_and_evaluate(model, data, data, _cfg(epochs=1, warmup_epochs=0), OptimConfig(),
                             torch.device("cpu"), 0)
    assert out.eval_infer_img_s is not None and out.eval_infer_img_s > 0  # 64 images in batches of 32: one timed
