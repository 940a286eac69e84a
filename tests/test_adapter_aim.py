"""AIM (image form): spatial adapter on the attention output, scaled parallel adapter on the MLP input."""

from __future__ import annotations

import pytest
import torch

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.layers.bottleneck import ParallelAdapter, SequentialAdapter
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit

D = 48  # tiny ViT width


def test_block_is_aims_spatial_then_joint_adaptation():
    model = tiny_vit()
    attach_method(model, build_method("aim"))
    model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    block = model.blocks[0]
    assert isinstance(block.attn, SequentialAdapter) and isinstance(block.mlp, ParallelAdapter)
    s_ad, m_ad = block.attn.adapter, block.mlp.adapter
    assert s_ad.down.out_features == m_ad.down.out_features == D // 4
    gelu = torch.nn.functional.gelu
    x = torch.randn(2, 17, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = block.attn.base_layer(block.norm1(x))
        x1 = x + a + s_ad.up(gelu(s_ad.down(a)))  # x + S_Adapter(attn(LN1 x)), S_Adapter with skip
        n = block.norm2(x1)
        expected = x1 + block.mlp.base_layer(n) + 0.5 * m_ad.up(gelu(m_ad.down(n)))  # joint adaptation
        torch.testing.assert_close(block(x), expected, atol=1e-6, rtol=0)


def test_init_zeroes_only_the_up_projections():
    model = tiny_vit()
    attach_method(model, build_method("aim", {"mlp_ratio": 1.0}))
    downs = torch.cat([b.attn.adapter.down.weight.flatten() for b in model.blocks])
    assert 0.017 < downs.std().item() < 0.023  # trunc-normal std 0.02
    for block in model.blocks:
        for ad in (block.attn.adapter, block.mlp.adapter):
            assert torch.count_nonzero(ad.up.weight) == 0 and torch.count_nonzero(ad.up.bias) == 0
            assert torch.count_nonzero(ad.down.bias) == 0


def test_swin_stages_get_a_quarter_of_their_own_width():
    model = tiny_swin()
    counts = attach_method(model, build_method("aim"))
    widths = [24, 48]
    assert [s.blocks[0].mlp.adapter.down.out_features for s in model.layers] == [w // 4 for w in widths]
    per_adapter = [w * (w // 4) + w // 4 + (w // 4) * w + w for w in widths]
    assert counts.trainable_params_without_head == 2 * sum(per_adapter)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize(
    ("adapters", "attn_wrapped", "mlp_wrapped"), [("spatial", True, False), ("mlp", False, True)]
)
def test_one_adapter_kind_alone(adapters, attn_wrapped, mlp_wrapped):
    model = tiny_vit()
    attach_method(model, build_method("aim", {"adapters": adapters}))
    for block in model.blocks:
        assert isinstance(block.attn, SequentialAdapter) is attn_wrapped
        assert isinstance(block.mlp, ParallelAdapter) is mlp_wrapped


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"scale": -0.5}, "scale must be a number > 0"),
        ({"adapters": "temporal"}, "mlp, spatial, spatial_mlp"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("aim", options)


def test_a_ratio_that_leaves_no_bottleneck_raises():
    with pytest.raises(ConfigError, match="mlp_ratio"):
        attach_method(tiny_vit(), build_method("aim", {"mlp_ratio": 0.01}))
