"""SSF: where the scale/shift pairs sit, how they are initialised, and how each kind of layer merges."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.attach import attach_method
from peftbench.methods.partial.reparam.ssf import SSFWrapper, ssf_sites
from peftbench.methods.registry import build_method
from tests.tiny_models import VIT_KWARGS, tiny_swin, tiny_vit


def test_vit_sites_are_block_linears_layernorms_and_the_patch_conv():
    model = tiny_vit()
    sites = set(ssf_sites(model))
    per_block = {"norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"}
    expected = {f"blocks.{i}.{s}" for i in range(3) for s in per_block} | {"patch_embed.proj", "norm"}
    assert sites == expected  # the head Linear is not a site


def test_swin_sites_include_patch_norm_and_patch_merging_norm_but_not_its_reduction():
    sites = set(ssf_sites(tiny_swin()))
    assert {"patch_embed.proj", "patch_embed.norm", "layers.1.downsample.norm", "norm"} <= sites
    assert "layers.1.downsample.reduction" not in sites and "head.fc" not in sites
    assert "layers.1.blocks.0.attn.qkv" in sites


def test_init_is_normal_around_one_and_zero():
    torch.manual_seed(0)
    layer = nn.Linear(8, 4096)
    wrapper = SSFWrapper(layer, init_std=0.02)
    assert (
        abs(wrapper.ssf_scale.mean().item() - 1.0) < 2e-3
        and abs(wrapper.ssf_scale.std().item() - 0.02) < 2e-3
    )
    assert abs(wrapper.ssf_shift.mean().item()) < 2e-3 and abs(wrapper.ssf_shift.std().item() - 0.02) < 2e-3


@pytest.mark.parametrize(
    ("layer", "x"),
    [
        (nn.Linear(6, 5), torch.randn(3, 7, 6)),
        (nn.LayerNorm(5), torch.randn(3, 7, 5)),
        (nn.Conv2d(3, 5, 2, stride=2), torch.randn(2, 3, 4, 4)),
    ],
)
def test_each_layer_kind_is_scaled_per_channel_and_merges_exactly(layer, x):
    torch.manual_seed(1)
    wrapper = SSFWrapper(layer, init_std=0.5)
    with torch.no_grad():
        y = wrapper(x)
        base_y = layer(x)
        shape = (-1, 1, 1) if isinstance(layer, nn.Conv2d) else (-1,)
        torch.testing.assert_close(y, base_y * wrapper.ssf_scale.view(shape) + wrapper.ssf_shift.view(shape))
        merged = wrapper.merged_layer()
        assert merged is layer
        torch.testing.assert_close(merged(x), y, atol=1e-6, rtol=0)


def test_merge_refuses_a_linear_without_bias_instead_of_growing_the_backbone():
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=5, qkv_bias=False, **VIT_KWARGS
    )
    method = build_method("ssf")
    attach_method(model, method)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model.eval()(x)
    with pytest.raises(MethodNotSupportedError, match=r"blocks\.0\.attn\.qkv .*no bias to absorb the shift"):
        method.merge(model)
    with torch.no_grad():  # refused before anything changed
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_ssf_trains_only_its_scales_and_shifts():
    model = tiny_vit()
    counts = attach_method(model, build_method("ssf"))
    d, mlp = 48, 192
    assert counts.trainable_params_without_head == 2 * (3 * (3 * d + d + mlp + d + 2 * d) + d + d)
    assert not model.blocks[0].attn.qkv.base_layer.weight.requires_grad


def test_negative_init_std_is_rejected():
    with pytest.raises(ConfigError, match="init_std"):
        build_method("ssf", {"init_std": -0.1})
