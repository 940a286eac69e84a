"""The protocol switches paper recipes need: schedule stepping, cooldown, lr scaling, drop_last, fp16 with a
gradient scaler, evaluation epochs, RandAugment, the FGVC final training split and NOAH's init."""

from __future__ import annotations

import pytest
import torch
from timm.scheduler import CosineLRScheduler
from torchvision import transforms as T

from peftbench.data import build_splits
from peftbench.data.cache import IndexBatches, is_cacheable
from peftbench.data.config import DataConfig
from peftbench.data.transforms import build_transforms, normalization
from peftbench.engine.loop import TrainerConfig, train_and_evaluate
from peftbench.engine.optim import OptimConfig
from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method, method_linears, noah_reinit
from peftbench.methods.registry import build_method
from tests.test_data import MEAN, STD, _cub_cfg, _data, fgvc_tree
from tests.test_engine import _cfg, _separable
from tests.tiny_models import tiny_vit


def _train(cfg: TrainerConfig, method: str = "linear", optim: OptimConfig | None = None, n: int = 64):
    torch.manual_seed(0)
    model = tiny_vit(num_classes=2)
    attach_method(model, build_method(method))
    log: list[dict] = []
    out = train_and_evaluate(model, _separable(n), _separable(32, seed=1), cfg, optim or OptimConfig(),
                             torch.device("cpu"), 0, log=log.append)
    return out, log, model


def _epoch_lrs(log: list[dict]) -> list[float]:
    return [r["lr"] for r in log if "train_loss" in r]


def test_per_epoch_schedule_is_timms_cosine_stepped_per_epoch_with_cooldown():
    cfg = _cfg(epochs=5, warmup_epochs=2, warmup_lr=1e-4, min_lr=1e-3, lr=1e-2, lr_schedule="per_epoch",
               cooldown_epochs=2)
    out, log, _ = _train(cfg)
    assert out.epochs_completed == 7 and log[-1]["epoch"] == 7  # epochs + cooldown
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    reference = CosineLRScheduler(opt, t_initial=5, lr_min=1e-3, warmup_t=2, warmup_lr_init=1e-4, cycle_limit=1,
                                  t_in_epochs=True)
    expected = [reference._get_lr(e)[0] for e in range(7)]
    assert _epoch_lrs(log) == pytest.approx(expected)
    # by hand: linear warmup from 1e-4, then timm's cosine counted from epoch 0 over 5 epochs, then min_lr
    assert expected[1] == pytest.approx(1e-4 + (1e-2 - 1e-4) / 2)
    assert expected[3] == pytest.approx(1e-3 + 0.5 * 9e-3 * (1 + torch.cos(torch.tensor(torch.pi * 3 / 5)).item()))
    assert expected[5:] == [1e-3, 1e-3]


def test_per_step_schedule_holds_min_lr_through_the_cooldown():
    out, log, _ = _train(_cfg(epochs=3, warmup_epochs=0, min_lr=1e-5, cooldown_epochs=2))
    assert out.epochs_completed == 5
    assert _epoch_lrs(log)[3:] == pytest.approx([1e-5, 1e-5])


def test_lr_base_batch_scales_the_peak_learning_rate_by_batch_over_base():
    cfg = _cfg(epochs=2, warmup_epochs=0, lr=0.1, batch_size=16, lr_base_batch=256, lr_schedule="per_epoch")
    assert cfg.peak_lr == pytest.approx(0.1 * 16 / 256)
    _, log, _ = _train(cfg, optim=OptimConfig(name="sgd"))
    assert _epoch_lrs(log)[0] == pytest.approx(0.1 * 16 / 256)


def test_drop_last_drops_the_incomplete_batch_and_an_empty_epoch_is_refused():
    sizes: list[int] = []
    torch.manual_seed(0)
    model = tiny_vit(num_classes=2)
    attach_method(model, build_method("full"))
    model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]) if m.training else None)
    train_and_evaluate(model, _separable(40), _separable(8, seed=1), _cfg(epochs=1, batch_size=16, drop_last=True),
                       OptimConfig(), torch.device("cpu"), 0)
    assert sizes == [16, 16]
    assert len(IndexBatches(40, 16, torch.Generator(), drop_last=True)) == 2
    with pytest.raises(ConfigError, match="leaves no batch"):
        _train(_cfg(epochs=1, batch_size=128, drop_last=True), n=40)


def test_fp16_trains_with_a_gradient_scaler():
    out, _, model = _train(_cfg(epochs=2, precision="fp16"), method="full")
    assert out.status == "success" and out.accuracy is not None
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, weights stay fp32


def test_eval_epochs_are_evaluated_and_recorded_besides_the_last():
    out, log, _ = _train(_cfg(epochs=4, eval_epochs=[0, 2]))
    assert [h["epoch"] for h in out.eval_history] == [1, 3, 4]
    assert [r["epoch"] for r in log if "eval_accuracy" in r] == [1, 3, 4]
    with pytest.raises(ConfigError, match="0-based epoch indices in \\[0, 3\\]"):
        _cfg(epochs=4, eval_epochs=[4])


def test_randaugment_augments_the_training_split_only_and_turns_the_input_cache_off(tmp_path):
    norm = normalization(DataConfig(image_size=32), MEAN, STD)
    train, evaluate = build_transforms("vtab", norm, "randaugment", "rand-m9-mstd0.5-inc1")
    kinds = [type(t).__name__ for t in train.transforms]
    assert kinds[:3] == ["Resize", "RandomHorizontalFlip", "RandAugment"]
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in evaluate.transforms)
    from tests.test_data import _vtab_cfg, vtab_tree

    vtab_tree(tmp_path)
    splits = build_splits(_vtab_cfg(), _data(tmp_path, augment="randaugment"), "final", MEAN, STD)
    assert not is_cacheable(splits.train) and is_cacheable(splits.eval)
    with pytest.raises(ConfigError, match="data.augment='flip'"):
        DataConfig(augment="flip")


def test_fgvc_final_model_trains_on_train_only_when_asked(tmp_path):
    fgvc_tree(tmp_path)
    only = build_splits(_cub_cfg(), _data(tmp_path, fgvc_final_train="train"), "final", MEAN, STD)
    both = build_splits(_cub_cfg(), _data(tmp_path), "final", MEAN, STD)
    assert (only.train_split, len(only.train), only.eval_split) == ("train", 6, "test")
    assert (both.train_split, len(both.train)) == ("train+val", 9)
    assert only.manifest_sha256 != both.manifest_sha256


def test_noah_init_reinitialises_exactly_the_linears_the_method_added():
    torch.manual_seed(0)
    model = tiny_vit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attach_method(model, build_method("lora"))
    added = method_linears(model)
    weights = [getattr(m, n) for m in added for n in m.LINEAR_WEIGHTS]
    assert len(added) == 3 and all(w.requires_grad for w in weights)  # one LoRA on qkv per block
    assert not weights[1].any()  # the paper's LoRA starts with B = 0
    assert noah_reinit(model) == len(added)
    assert all(w.any() and w.abs().max() <= 2.0 for w in weights)  # trunc-normal(0.02), cut at +-2
    assert 0.01 < torch.cat([w.flatten() for w in weights]).std().item() < 0.03
    after = model.state_dict()
    for key, value in before.items():  # the backbone is untouched (its qkv lives on as base_layer)
        match = [k for k in after if k.endswith(key.replace("qkv.", "qkv.base_layer."))] if "qkv" in key else [key]
        assert torch.equal(after[match[0]], value), key


def test_noah_init_gives_adapter_linears_trunc_normal_weights_and_zero_biases():
    torch.manual_seed(0)
    model = tiny_vit()
    attach_method(model, build_method("adapter"))
    linears = [m for m in method_linears(model) if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6  # down and up of one adapter per block
    noah_reinit(model)
    assert all(not m.bias.any() and m.weight.any() and m.weight.abs().max() <= 2.0 for m in linears)


def test_a_lagged_schedule_trains_epoch_e_at_the_value_of_e_minus_one():
    base = dict(epochs=5, warmup_epochs=2, warmup_lr=1e-4, min_lr=1e-3, lr=1e-2, lr_schedule="per_epoch")
    _, timm_log, _ = _train(_cfg(**base))
    _, lagged_log, _ = _train(_cfg(**base, lr_schedule_lag=1))
    timm_lrs, lagged = _epoch_lrs(timm_log), _epoch_lrs(lagged_log)
    assert lagged[0] == lagged[1] == pytest.approx(1e-4)  # epochs 0 and 1 both at warmup_lr
    assert lagged[1:] == pytest.approx(timm_lrs[:-1])


def test_warmup_prefix_runs_the_cosine_over_the_epochs_after_the_warmup():
    _, log, _ = _train(_cfg(epochs=6, warmup_epochs=2, warmup_lr=0.0, min_lr=0.0, lr=1.0, lr_schedule="per_epoch",
                            warmup_prefix=True))
    # VPT's shape: lr(e) = e / w during the warmup, then 0.5 (1 + cos(pi (e - w) / (T - w)))
    import math

    expected = [0.0, 0.5] + [0.5 * (1 + math.cos(math.pi * (e - 2) / 4)) for e in range(2, 6)]
    assert _epoch_lrs(log) == pytest.approx(expected)


def test_cosine_epochs_sets_the_length_of_the_cosine_independently_of_the_run():
    _, log, _ = _train(_cfg(epochs=4, warmup_epochs=0, min_lr=0.0, lr=1.0, lr_schedule="per_epoch", cosine_epochs=8))
    import math

    assert _epoch_lrs(log) == pytest.approx([0.5 * (1 + math.cos(math.pi * e / 8)) for e in range(4)])
