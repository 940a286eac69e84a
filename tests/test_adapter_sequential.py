"""Sequential adapters: NOAH's Adapter-8 (``adapter``) and Houlsby's two-per-block form (``adapter_houlsby``)."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.vision_transformer import Attention, ResPostBlock

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.attach import attach_method
from peftbench.methods.layers.bottleneck import SequentialAdapter
from peftbench.methods.registry import build_method
from tests.tiny_models import VIT_KWARGS, tiny_swin, tiny_vit

D = 48  # tiny ViT width


def _quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_adapter_sits_on_every_mlp_output_before_the_residual_add():
    model = tiny_vit()
    attach_method(model, build_method("adapter"))
    model.eval()
    _perturb(model)
    for block in model.blocks:
        assert isinstance(block.mlp, SequentialAdapter)
        assert isinstance(block.attn, Attention)  # the attention path is untouched
    block = model.blocks[1]
    x = torch.randn(2, 17, D, generator=torch.Generator().manual_seed(1))
    ad = block.mlp.adapter
    with torch.no_grad():
        x1 = x + block.attn(block.norm1(x))
        m = block.mlp.base_layer(block.norm2(x1))  # (B, N, D)
        expected = x1 + m + ad.up(_quick_gelu(ad.down(m)))  # NOAH: QuickGELU, inner skip
        torch.testing.assert_close(block(x), expected, atol=1e-6, rtol=0)


def test_adapter_init_is_noahs_effective_normal_init_and_not_identity():
    model = tiny_vit()
    attach_method(model, build_method("adapter", {"dim": 48}))
    ws = torch.cat(
        [
            torch.cat([b.mlp.adapter.down.weight.flatten(), b.mlp.adapter.up.weight.flatten()])
            for b in model.blocks
        ]
    )
    assert 0.018 < ws.std().item() < 0.022  # N(0, 0.02^2), 13,824 samples
    assert ws.abs().max().item() > 0.05  # not truncated at 2 std
    for b in model.blocks:
        assert torch.count_nonzero(b.mlp.adapter.down.bias) == 0
        assert torch.count_nonzero(b.mlp.adapter.up.bias) == 0
    base = tiny_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model.eval()(x), base(x), atol=1e-6)


def test_houlsby_has_two_adapters_per_block_and_trains_every_layernorm():
    model = tiny_vit()
    counts = attach_method(model, build_method("adapter_houlsby", {"dim": 4}))
    for block in model.blocks:
        assert isinstance(block.attn, SequentialAdapter) and isinstance(block.mlp, SequentialAdapter)
        assert isinstance(block.mlp.adapter.act, torch.nn.GELU)
        for ad in (block.attn.adapter, block.mlp.adapter):
            for w in (ad.down.weight, ad.up.weight):  # truncated normal, std 1e-3, cut at 2 std
                assert 0 < w.abs().max().item() <= 2e-3
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 3 + 1
    assert all(p.requires_grad for m in norms for p in m.parameters())
    adapters = 2 * 3 * (D * 4 + 4 + 4 * D + D)
    assert counts.trainable_params_without_head == adapters + len(norms) * 2 * D


def test_houlsby_on_swin_counts_every_layernorm_outside_the_head():
    model = tiny_swin()
    counts = attach_method(model, build_method("adapter_houlsby", {"dim": 2}))
    norm_params = sum(
        p.numel() for m in model.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters()
    )
    adapter_params = sum(
        p.numel() for m in model.modules() if isinstance(m, SequentialAdapter) for p in m.adapter.parameters()
    )
    assert counts.trainable_params_without_head == adapter_params + norm_params
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_attn_placement_adds_one_adapter_on_the_attention_output_only():
    model = tiny_vit()
    attach_method(model, build_method("adapter", {"placement": "attn", "dim": 4}))
    assert all(
        isinstance(b.attn, SequentialAdapter) and not isinstance(b.mlp, SequentialAdapter)
        for b in model.blocks
    )


def test_adapters_take_the_backbone_dtype():
    model = tiny_vit().double()
    attach_method(model, build_method("adapter_houlsby", {"dim": 4}))
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model(torch.randn(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"placement": "ffn"}, "attn, attn_mlp, mlp"),
        ({"dim": 0}, "integer >= 1"),
        ({"activation": "tanh"}, "gelu, quick_gelu, relu"),
        ({"dropout": 1.0}, r"\[0, 1\)"),
        ({"init": "zeros"}, "kaiming_zero"),
        ({"init_std": -1.0}, "init_std"),
    ],
)
def test_bad_options_raise_config_errors_with_the_valid_choices(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("adapter", options)


def test_blocks_with_another_layout_raise():
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=5, block_fn=ResPostBlock, **VIT_KWARGS
    )
    with pytest.raises(MethodNotSupportedError, match="ResPostBlock"):
        attach_method(model, build_method("adapter"))
