"""Adapter+: a post-block adapter with channel-wise scaling, Houlsby init and drop-path on the branch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.addition.adapter.adapter_plus import PostAdapterBlock
from peftbench.methods.attach import attach_method
from peftbench.methods.layers.bottleneck import Bottleneck
from peftbench.methods.registry import build_method
from peftbench.paths import config_dir
from tests.method_rows import D as D_B16
from tests.method_rows import L as L_B16
from tests.tiny_models import ARCHS, tiny_swin, tiny_vit


def _prepared(builder=tiny_vit, **options):
    model = builder()
    attach_method(model, build_method("adapter_plus", {"dim": 4, **options}))
    return model.eval()


def test_hand_checked_post_adapter():
    like = torch.zeros(1)
    adapter = Bottleneck(2, 1, "gelu", 0.0, "trunc_normal", 0.01, like)
    with torch.no_grad():
        adapter.down.weight.copy_(torch.tensor([[1.0, 1.0]]))
        adapter.up.weight.copy_(torch.tensor([[1.0], [2.0]]))
    block = PostAdapterBlock(nn.Identity(), adapter, 2, 0.0, like)
    with torch.no_grad():
        block.scaling.copy_(torch.tensor([1.0, 0.5]))
        out = block(torch.tensor([[1.0, 1.0]]))
    g = 2.0 * 0.5 * (1.0 + math.erf(2.0 / math.sqrt(2.0)))  # gelu(1 + 1)
    torch.testing.assert_close(out, torch.tensor([[1.0 + g, 1.0 + 0.5 * 2.0 * g]]))


@pytest.mark.parametrize("builder", [tiny_vit, tiny_swin])
def test_the_adapter_reads_and_adds_to_the_block_output(builder):
    model = _prepared(builder)
    name, wrapper = next((n, m) for n, m in model.named_modules() if isinstance(m, PostAdapterBlock))
    with torch.no_grad():
        wrapper.scaling.normal_()
        x = torch.randn(2, 8, 8, 24) if builder is tiny_swin else torch.randn(2, 17, 48)
        y = wrapper.base_layer(x)
        expected = y + wrapper.adapter.up(nn.functional.gelu(wrapper.adapter.down(y))) * wrapper.scaling
        torch.testing.assert_close(wrapper(x), expected)
    assert sum(isinstance(m, PostAdapterBlock) for m in model.modules()) == (3 if builder is tiny_vit else 2)


def test_houlsby_init_channel_scaling_and_near_identity():
    base = tiny_vit().eval()
    model = _prepared(dim=8)
    wrapper = model.blocks[0]
    for layer in (wrapper.adapter.down, wrapper.adapter.up):
        assert layer.weight.abs().max() <= 0.02 and torch.count_nonzero(layer.bias) == 0
        assert 0.005 < layer.weight.std() < 0.015
    assert torch.equal(wrapper.scaling, torch.ones(48)) and wrapper.scaling.requires_grad
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        diff = (model(x) - base(x)).abs().max()
    assert 0 < diff < 1e-2  # near-identity, not exact (no zero factor)


def test_drop_path_drops_the_whole_branch_per_sample_in_training_only():
    wrapper = _prepared(drop_path=0.5).blocks[0]
    with torch.no_grad():
        wrapper.adapter.up.weight.normal_()
        x = torch.randn(64, 17, 48)
        y = wrapper.base_layer(x)
        wrapper.train()
        dropped = (wrapper(x) - y).abs().amax(dim=(1, 2)) == 0  # (B,)
        assert 0 < int(dropped.sum()) < 64
        wrapper.eval()
        assert not ((wrapper(x) - y).abs().amax(dim=(1, 2)) == 0).any()


def test_the_recipes_per_task_dims_give_the_published_mean():
    from omegaconf import OmegaConf

    per_task = OmegaConf.load(config_dir() / "experiment" / "adapter_plus" / "adapter_plus_opt.yaml").per_task
    dims = [values["method.dim"] for values in per_task.vtab.values()]
    # "Adapter+ opt." sits at 0.27M in the paper's Fig. 1: the mean over the 19 tasks, head (940 x 769) included
    counts = [L_B16 * (D_B16 * r + r + r * D_B16 + D_B16 + D_B16) for r in dims]
    assert len(counts) == 19 and round((sum(counts) + 940 * 769) / 19 / 1e6, 2) == 0.27


def test_on_convnext_the_adapter_reads_each_blocks_channels_first_output_per_pixel():
    model = ARCHS["convnext"].build()
    attach_method(model, build_method("adapter_plus", {"dim": 4}))
    wrapper = model.stages[1].blocks[0]
    assert isinstance(wrapper, PostAdapterBlock) and wrapper.channels_first
    with torch.no_grad():
        wrapper.scaling.normal_()
        x = torch.randn(2, 8, 4, 4)  # (B, C, H, W)
        y = wrapper.base_layer(x)
        h = y.permute(0, 2, 3, 1)
        expected = y + (wrapper.adapter.up(nn.functional.gelu(wrapper.adapter.down(h))) * wrapper.scaling).permute(0, 3, 1, 2)
        torch.testing.assert_close(wrapper.eval()(x), expected)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"dim": 0}, "dim must be an integer"),
        ({"dropout": 1.5}, r"\[0, 1\)"),
        ({"drop_path": -0.1}, "drop_path"),
        ({"dim": "auto"}, "dim must be an integer"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("adapter_plus", options)
