"""GPU-path options leave CPU results unchanged: fp32 under ``precision=auto``, no fused AdamW, eager vs
``torch.compile``, and the evaluation batch size. (Their speed is measured on a GPU with peftbench-bench.)"""

from __future__ import annotations

import pytest
import torch

from peftbench.engine.loop import TrainerConfig, autocast_dtype, evaluate, train_and_evaluate
from peftbench.engine.optim import OptimConfig, build_optimizer, use_fused_adamw
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.test_input_cache import CLASSES, vtab_splits
from tests.tiny_models import tiny_vit

CPU = torch.device("cpu")


def test_cpu_defaults_keep_fp32_and_the_unfused_optimizer():
    assert autocast_dtype(TrainerConfig().precision, CPU) is None
    assert use_fused_adamw(CPU, OptimConfig()) is False and use_fused_adamw(CPU, OptimConfig(name="sgd")) is False
    assert use_fused_adamw(torch.device("cuda"), OptimConfig()) is True
    assert use_fused_adamw(torch.device("cuda"), OptimConfig(name="sgd")) is False
    p = torch.nn.Parameter(torch.zeros(3))
    assert not build_optimizer([p], OptimConfig(), 1e-3, 0.0, fused=use_fused_adamw(CPU, OptimConfig())).defaults["fused"]


def _train(splits, **trainer):
    model = tiny_vit(num_classes=CLASSES)
    attach_method(model, build_method("bitfit"))
    cfg = TrainerConfig(epochs=2, batch_size=8, eval_batch_size=16, lr=5e-3, warmup_epochs=1, progress=False, **trainer)
    outcome = train_and_evaluate(model, splits.train, splits.eval, cfg, OptimConfig(), CPU, seed=0)
    return model, outcome


@pytest.mark.filterwarnings("ignore")
def test_compiled_training_matches_eager(tmp_path):
    splits = vtab_splits(tmp_path)
    eager, out_eager = _train(splits)
    # the eager backend exercises graph capture without a C++ toolchain; inductor is the default on GPUs
    compiled, out_compiled = _train(splits, compile=True, compile_backend="eager")
    assert out_compiled.input_pipeline["compile"] == "eager" and out_eager.input_pipeline["compile"] is None
    assert out_eager.accuracy == out_compiled.accuracy
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_eval_batch_size_does_not_change_accuracy(tmp_path):
    splits = vtab_splits(tmp_path)
    model = tiny_vit(num_classes=CLASSES)
    accuracies = {evaluate(model, splits.eval, b, CPU, None) for b in (1, 4, 256)}
    assert len(accuracies) == 1
