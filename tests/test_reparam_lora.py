"""LoRA's defining behaviour on timm's fused qkv: which slots each form adapts, scaling, init, options."""

from __future__ import annotations

import math

import pytest
import torch

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.partial.reparam.lora import LoRALinear
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit

DIM = 48  # tiny ViT width


def _adapted(name: str, options: dict | None = None, seed: int = 0):
    model = tiny_vit(seed=seed)
    attach_method(model, build_method(name, options))
    model.eval()  # after apply: the injected modules are created in training mode
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # a trained-looking B so the branch is non-zero
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g))
    return model


def _branch(wrapper: LoRALinear, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return wrapper(x) - wrapper.base_layer(x)  # (..., 3D)


def test_lora_qv_adapts_exactly_the_q_and_v_slices_and_leaves_k_untouched():
    model = _adapted("lora_qv")
    qkv = model.blocks[1].attn.qkv
    assert isinstance(qkv, LoRALinear) and qkv.slots == (0, 2)
    x = torch.randn(2, 17, DIM)
    d = _branch(qkv, x).unflatten(-1, (3, DIM))  # (B, N, slot, D)
    assert torch.count_nonzero(d[..., 1, :]) == 0  # k
    scaling = 8.0 / 8  # alpha / r
    a, b = qkv.lora_A, qkv.lora_B
    torch.testing.assert_close(d[..., 0, :], scaling * x @ a[0].t() @ b[0].t())  # q: its own pair
    torch.testing.assert_close(d[..., 2, :], scaling * x @ a[1].t() @ b[1].t())  # v: its own pair
    assert not torch.allclose(a[0], a[1])  # two independent A matrices, not one shared


def test_default_lora_is_noahs_single_pair_on_the_whole_fused_qkv_without_scaling():
    model = _adapted("lora")
    qkv = model.blocks[0].attn.qkv
    assert qkv.lora_A.shape == (1, 8, DIM) and qkv.lora_B.shape == (1, 3 * DIM, 8)
    assert qkv.scaling == 1.0
    x = torch.randn(2, 17, DIM)
    d = _branch(qkv, x)
    torch.testing.assert_close(d, x @ qkv.lora_A[0].t() @ qkv.lora_B[0].t())
    assert all(torch.count_nonzero(s) > 0 for s in d.unflatten(-1, (3, DIM)).unbind(-2))  # q, k and v move
    assert [type(m.attn.proj).__name__ for m in model.blocks] == ["Linear"] * 3  # nothing else wrapped


def test_alpha_over_rank_scales_the_branch():
    x = torch.randn(2, 5, DIM)
    base = _branch(_adapted("lora", {"rank": 4, "alpha": 4.0}).blocks[0].attn.qkv, x)
    doubled = _branch(_adapted("lora", {"rank": 4, "alpha": 8.0}).blocks[0].attn.qkv, x)
    torch.testing.assert_close(doubled, 2 * base)


def test_a_is_kaiming_uniform_per_slot_and_b_is_zero_at_init():
    model = tiny_vit()
    attach_method(model, build_method("lora_qv"))
    qkv = model.blocks[0].attn.qkv
    bound = 1 / math.sqrt(DIM)  # kaiming_uniform(a=sqrt(5)) on (r, in): U(-1/sqrt(in), 1/sqrt(in))
    assert qkv.lora_A.abs().max() <= bound and qkv.lora_A.abs().max() > 0.5 * bound
    assert torch.count_nonzero(qkv.lora_B) == 0


@pytest.mark.parametrize(
    ("targets", "wrapped", "per_block"),
    [
        ("q_k_v", {"attn.qkv"}, 3 * (DIM * 8 + 8 * DIM)),
        ("q_k_v_o", {"attn.qkv", "attn.proj"}, 4 * (DIM * 8 + 8 * DIM)),
        (
            "all_linear",
            {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"},
            (DIM * 8 + 8 * 3 * DIM) + 2 * DIM * 8 + (DIM * 8 + 8 * 4 * DIM) + (4 * DIM * 8 + 8 * DIM),
        ),
    ],
)
def test_targets_choose_the_wrapped_layers_and_the_count(targets, wrapped, per_block):
    model = tiny_vit()
    counts = attach_method(model, build_method("lora", {"targets": targets}))
    names = {n.split(".", 2)[2] for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert names == wrapped
    assert counts.trainable_params_without_head == 3 * per_block


def test_swin_qkv_gets_the_same_slot_structure():
    model = tiny_swin()
    attach_method(model, build_method("lora_qv"))
    wrappers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    assert len(wrappers) == 2 and all(w.slots == (0, 2) and w.num_slots == 3 for w in wrappers)
    assert [w.lora_B.shape[1] for w in wrappers] == [24, 48]  # slot width = stage width


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"targets": "qk"}, "all_linear, mlp, q_k_v, q_k_v_o, q_v, qkv"),
        ({"rank": 0}, "rank must be an integer >= 1"),
        ({"alpha": -1.0}, "alpha must be > 0 or null"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"ranks": 4}, "valid options: alpha, dropout, rank, targets"),
    ],
)
def test_bad_options_raise_config_error_with_the_valid_choices(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("lora", options)


def test_dropout_acts_on_the_branch_in_training_only():
    model = _adapted("lora", {"dropout": 0.5})
    qkv = model.blocks[0].attn.qkv
    x = torch.randn(2, 5, DIM)
    qkv.train()
    torch.manual_seed(0)
    first, second = _branch(qkv, x), _branch(qkv, x)
    assert not torch.allclose(first, second)
    qkv.eval()
    torch.testing.assert_close(_branch(qkv, x), x @ qkv.lora_A[0].t() @ qkv.lora_B[0].t())
