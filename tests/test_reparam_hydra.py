"""Hydra: parallel + sequential low-rank branches on attn.proj and mlp.fc2, folded into the Linear by merge."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.partial.reparam.hydra import HydraLinear
from peftbench.methods.registry import build_method
from tests.tiny_models import ARCHS, tiny_vit

D = 48  # tiny ViT width


def _set(layer: nn.Linear, weight: list, bias: list) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        layer.bias.copy_(torch.tensor(bias))


def _hand_layer() -> HydraLinear:
    base = nn.Linear(3, 2)
    _set(base, [[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]], [1.0, -1.0])
    layer = HydraLinear(base, rank=1, scale=0.5, dropout=0.0)
    _set(layer.par_down, [[1.0, 1.0, 0.0]], [0.5])
    _set(layer.par_up, [[1.0], [2.0]], [0.0, 1.0])
    _set(layer.seq_down, [[1.0, -1.0]], [0.0])
    _set(layer.seq_up, [[0.5], [0.0]], [0.0, 0.0])
    return layer


def test_hand_checked_forward_and_merge():
    # W0 x + b0 = [8, -2]; P(x) = [3.5, 8]; S([8, -2]) = [5, 0]; y = [8, -2] + 0.5 ([3.5, 8] + [5, 0])
    layer = _hand_layer()
    x = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(layer(x), torch.tensor([[12.25, 2.0]]))
    # W = W0 + s (Up_p Dn_p + Up_s Dn_s W0), b = b0 + s (Up_p bd_p + bu_p + Up_s (Dn_s b0 + bd_s) + bu_s)
    merged = layer.merged_layer()
    torch.testing.assert_close(merged.weight, torch.tensor([[1.75, 0.25, 2.75], [1.0, 2.0, -1.0]]))
    torch.testing.assert_close(merged.bias, torch.tensor([1.75, 0.0]))
    torch.testing.assert_close(merged(x), torch.tensor([[12.25, 2.0]]))


def test_branches_sit_on_attn_proj_and_mlp_fc2_only():
    model = tiny_vit()
    attach_method(model, build_method("hydra"))
    for block in model.blocks:
        assert isinstance(block.attn.proj, HydraLinear) and isinstance(block.mlp.fc2, HydraLinear)
        assert type(block.attn.qkv) is nn.Linear and type(block.mlp.fc1) is nn.Linear
        fc2 = block.mlp.fc2
        assert (fc2.par_down.in_features, fc2.seq_down.in_features, fc2.par_down.out_features) == (4 * D, D, 2)
        assert torch.count_nonzero(fc2.par_down.weight) == fc2.par_down.weight.numel()  # xavier, not zero
        assert torch.count_nonzero(fc2.par_down.bias) == 0


def test_dropout_acts_on_the_rank_r_hidden_in_training_only():
    base = nn.Linear(D, D)
    layer = HydraLinear(base, rank=2, scale=1.0, dropout=0.5)
    with torch.no_grad():
        for p in (layer.par_up.weight, layer.seq_up.weight):
            p.normal_()
    x = torch.randn(64, D)
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x), atol=0, rtol=0)


def test_on_eva02_the_branches_wrap_proj_and_the_swiglu_output_linear():
    model = ARCHS["eva02"].build()
    attach_method(model, build_method("hydra", {"scale": 0.5}))
    block = model.blocks[0]
    assert isinstance(block.attn.proj, HydraLinear) and isinstance(block.mlp.fc2, HydraLinear)
    assert block.mlp.fc2.par_down.in_features == block.mlp.fc1_x.out_features and block.attn.proj.scale == 0.5
    assert all(type(block.attn.get_submodule(f"{p}_proj")) is nn.Linear for p in "qkv")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"dim": 0}, "dim must be an integer"),
        ({"scale": -1}, "scale must be a number > 0"),
        ({"scale": "auto"}, "scale must be a number > 0"),
        ({"dropout": 1.0}, r"\[0, 1\)"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("hydra", options)
