"""Prefix tuning's defining behaviour: keys and values get learned prefixes, queries and token count do not change."""

from __future__ import annotations

import pytest
import torch

from peftbench.errors import ConfigError
from peftbench.methods.addition.prefix.prefix import PrefixAttention
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit


def _wrapped(builder, **options):
    model = builder(seed=0)
    attach_method(model, build_method("prefix", {"length": 4, **options}))
    return model.eval()


def _split(attn, x):
    base = attn.base_layer
    heads = base.num_heads
    q, k, v = base.qkv(x).chunk(3, dim=-1)  # (B, N, H*hd) each, timm's fused layout
    return [t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v)]  # (B, H, N, hd)


def _reference(attn, x, pk, pv, bias=None):
    """Explicit softmax attention over [prefix; tokens], written independently of the wrapper."""
    base = attn.base_layer
    q, k, v = _split(attn, x)
    heads = base.num_heads
    pk = pk.unflatten(-1, (heads, -1)).transpose(0, 1).expand(x.shape[0], -1, -1, -1)  # (B, H, l, hd)
    pv = pv.unflatten(-1, (heads, -1)).transpose(0, 1).expand(x.shape[0], -1, -1, -1)
    logits_prefix = q @ pk.transpose(-1, -2) * base.scale  # (B, H, N, l)
    logits_tokens = q @ k.transpose(-1, -2) * base.scale  # (B, H, N, N)
    if bias is not None:
        logits_tokens = logits_tokens + bias
    weights = torch.cat((logits_prefix, logits_tokens), dim=-1).softmax(-1)
    out = weights @ torch.cat((pv, v), dim=2)  # (B, H, N, hd)
    return base.proj(out.transpose(1, 2).flatten(2))


def test_vit_attention_equals_softmax_over_prefix_and_token_keys():
    model = _wrapped(tiny_vit)
    attn = model.blocks[1].attn
    assert isinstance(attn, PrefixAttention) and attn.prefix_key.shape == (4, 48)
    x = torch.randn(2, 17, 48)
    with torch.no_grad():
        out = attn(x)
        torch.testing.assert_close(
            out, _reference(attn, x, attn.prefix_key, attn.prefix_value), atol=1e-5, rtol=1e-5
        )
        assert out.shape == x.shape  # prefixes add keys, not output tokens
        assert not torch.allclose(out, attn.base_layer(x), atol=1e-4)


def test_swin_prefixes_skip_the_position_bias_and_the_shifted_window_mask():
    import timm

    from tests.tiny_models import SWIN_KWARGS

    torch.manual_seed(0)
    model = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, **{**SWIN_KWARGS, "depths": (2, 2)}
    ).eval()
    attach_method(model, build_method("prefix", {"length": 4}))
    block = model.layers[0].blocks[1]  # the shifted-window block of the first stage
    assert isinstance(block.attn, PrefixAttention) and block.attn_mask is not None
    mask = block.attn_mask  # (nW, 16, 16), 0 / -inf
    windows = torch.randn(2 * mask.shape[0], 16, 24)  # 2 images x nW windows of 4x4 tokens
    with torch.no_grad():
        out = block.attn(windows, mask=mask)
        bias = block.attn.base_layer._get_rel_pos_bias()  # (1, H, 16, 16)
        bias = bias + mask.repeat(2, 1, 1).unsqueeze(1)  # (2 nW, H, 16, 16)
        expected = _reference(block.attn, windows, block.attn.prefix_key, block.attn.prefix_value, bias)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_swin_shifted_mask_is_honoured():
    model = _wrapped(tiny_swin)
    attn = model.layers[0].blocks[0].attn
    windows = torch.randn(4, 16, 24)
    mask = torch.zeros(4, 16, 16)
    mask[:, :, 8:] = float("-inf")  # the first half of every window may not see the second half
    with torch.no_grad():
        out = attn(windows, mask=mask)
        changed = windows.clone()
        changed[:, 8:] += 1.0  # only masked tokens (their keys/values) change ... and their own queries
        out2 = attn(changed, mask=mask)
    torch.testing.assert_close(out[:, :8], out2[:, :8])  # unmasked rows see only prefixes and the first half


def test_mlp_form_generates_the_prefixes_and_trains_the_generator():
    model = _wrapped(tiny_vit, form="mlp", mid_dim=16)
    attn = model.blocks[0].attn
    pk, pv = attn.prefixes()
    assert pk.shape == pv.shape == (4, 48)
    x = torch.randn(2, 17, 48)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _reference(attn, x, pk, pv), atol=1e-5, rtol=1e-5)
    names = {n for n, p in attn.named_parameters() if p.requires_grad}
    assert names == {
        "prefix_embedding",
        "generator.0.weight",
        "generator.0.bias",
        "generator.2.weight",
        "generator.2.bias",
    }


def test_patt_adds_a_scaled_branch_to_keys_and_values_only():
    model = _wrapped(tiny_vit, form="patt", mid_dim=8, scale=0.5)
    attn = model.blocks[0].attn
    up = attn.branch[2]
    x = torch.randn(2, 17, 48)
    with torch.no_grad():
        up.weight.zero_()
        up.bias.zero_()
        torch.testing.assert_close(attn(x), attn.base_layer(x), atol=1e-6, rtol=0)  # zero branch = base
        up.weight[48:].normal_()  # only the value half of the branch
        q, k, v = _split(attn, x)
        dv = (0.5 * attn.branch(x)[..., 48:]).unflatten(-1, (3, -1)).transpose(1, 2)
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v + dv)
        expected = attn.base_layer.proj(expected.transpose(1, 2).flatten(2))
        torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_counts_of_the_three_forms_on_the_tiny_vit():
    def count(**options):
        model = tiny_vit()
        return attach_method(model, build_method("prefix", options)).trainable_params_without_head

    assert count(length=5) == 3 * 2 * 5 * 48
    assert count(form="mlp", length=5, mid_dim=16) == 3 * (5 * 48 + 48 * 16 + 16 + 16 * 96 + 96)
    assert count(form="patt", mid_dim=16) == 3 * (48 * 16 + 16 + 16 * 96 + 96)  # qkv has a bias: so do they


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"form": "lora"}, "form"),
        ({"length": 0}, "length"),
        ({"mid_dim": 1.5}, "mid_dim"),
        ({"scale": 0}, "scale"),
    ],
)
def test_bad_options_raise_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("prefix", options)
