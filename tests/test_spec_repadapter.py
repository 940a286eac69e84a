"""RepAdapter: placement before qkv / fc1, the grouped up-projection, and the re-parameterisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.partial.reparam.repadapter import RepAdapterLinear
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit


def _randomise(wrapper: RepAdapterLinear, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (wrapper.down.weight, wrapper.down.bias, wrapper.up_weight, wrapper.up_bias):
            p.copy_(torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(("targets", "wrapped"), [("block", {"attn.qkv", "mlp.fc1"}), ("attn", {"attn.qkv"})])
def test_adapters_sit_in_front_of_qkv_and_fc1_only(targets, wrapped):
    model = tiny_vit()
    attach_method(model, build_method("repadapter", {"targets": targets}))
    for block in model.blocks:
        found = {n for n, m in block.named_modules() if isinstance(m, RepAdapterLinear)}
        assert found == wrapped
        assert isinstance(block.attn.proj, nn.Linear) and isinstance(block.mlp.fc2, nn.Linear)


def test_the_adapter_equals_the_reference_conv1d_form_with_groups():
    torch.manual_seed(0)
    base = nn.Linear(12, 36)
    wrapper = RepAdapterLinear(base, hidden_dim=8, groups=2, scale=0.7, dropout=0.0)
    _randomise(wrapper)
    conv_a = nn.Conv1d(12, 8, 1, groups=1, bias=True)
    conv_b = nn.Conv1d(8, 12, 1, groups=2, bias=True)  # weight (12, 4, 1): the reference layout
    with torch.no_grad():
        conv_a.weight.copy_(wrapper.down.weight.unsqueeze(-1))
        conv_a.bias.copy_(wrapper.down.bias)
        conv_b.weight.copy_(wrapper.up_weight.reshape(12, 4, 1))
        conv_b.bias.copy_(wrapper.up_bias)
        x = torch.randn(3, 5, 12)  # (B, N, C)
        reference = (conv_b(conv_a(x.transpose(1, 2))) * 0.7 + x.transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(wrapper.adapter(x), reference)
        torch.testing.assert_close(wrapper(x), base(reference))


def test_up_projection_is_block_diagonal_over_the_groups():
    wrapper = RepAdapterLinear(nn.Linear(12, 12), hidden_dim=8, groups=2, scale=1.0, dropout=0.0)
    _randomise(wrapper)
    dense = wrapper.dense_up()  # (12, 8)
    assert dense.shape == (12, 8)
    assert torch.count_nonzero(dense[:6, 4:]) == 0 and torch.count_nonzero(dense[6:, :4]) == 0
    assert wrapper.up_weight.numel() == 12 * 8 // 2  # = conv_B's grouped kernel


def test_merged_linear_is_the_reference_reparameterisation():
    torch.manual_seed(0)
    base = nn.Linear(12, 20)
    wrapper = RepAdapterLinear(base, hidden_dim=4, groups=2, scale=2.0, dropout=0.1).eval()
    _randomise(wrapper, seed=3)
    w, b = base.weight.detach().clone(), base.bias.detach().clone()
    a_w, a_b = wrapper.down.weight.detach(), wrapper.down.bias.detach()
    b_w, b_b = wrapper.dense_up().detach(), wrapper.up_bias.detach()
    x = torch.randn(4, 12)
    with torch.no_grad():
        expected = wrapper(x)
        merged = wrapper.merged_layer()
    # W' = W (I + s B A), b' = b + s W (B a + b_B)
    torch.testing.assert_close(merged.weight.detach(), w @ (torch.eye(12) + 2.0 * b_w @ a_w))
    torch.testing.assert_close(merged.bias.detach(), b + 2.0 * w @ (b_w @ a_b + b_b))
    torch.testing.assert_close(merged(x).detach(), expected, atol=1e-5, rtol=0)


def test_swin_adapters_use_each_stage_width():
    model = tiny_swin()
    attach_method(model, build_method("repadapter", {"hidden_dim": 4}))
    widths = [b.attn.qkv.up_bias.numel() for stage in model.layers for b in stage.blocks]
    assert widths == [24, 48]


@pytest.mark.parametrize(
    "options",
    [{"hidden_dim": 7, "groups": 2}, {"groups": 0}, {"targets": "mlp"}, {"dropout": 1.0}, {"scale": "big"}],
)
def test_bad_options_raise_config_errors(options):
    with pytest.raises(ConfigError, match="repadapter"):
        build_method("repadapter", options)


def test_groups_must_divide_the_layer_width():
    with pytest.raises(ConfigError, match="must divide the layer width 48"):
        attach_method(tiny_vit(), build_method("repadapter", {"hidden_dim": 10, "groups": 5}))


def test_the_paper_recipe_gives_every_vtab_task_a_scale_from_the_searched_set():
    from peftbench.assemble import parse_spec
    from peftbench.config import compose
    from peftbench.results.suites import VTAB_TASKS

    table = compose(["experiment=repadapter/repadapter"])["per_task"]["vtab"]
    assert sorted(table) == sorted(VTAB_TASKS)
    assert {entry["method.scale"] for entry in table.values()} <= {0.1, 0.5, 1.0, 5.0, 10.0}
    args = ["experiment=repadapter/repadapter", "dataset=vtab/svhn"]
    assert parse_spec(compose(args), command_line=args).method.options["scale"] == 10.0
