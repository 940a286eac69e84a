"""vpetl_unified and u_tuning: the structure each paper describes, built through composition (tiny ViT, CPU)."""

from __future__ import annotations

import pytest
import torch

from peftbench.errors import ConfigError
from peftbench.methods.addition.prefix.prefix import PrefixAttention
from peftbench.methods.attach import attach_method
from peftbench.methods.layers.bottleneck import ParallelAdapter
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_vit

D, DEPTH = 48, 3  # tiny_vit


def bottleneck(r: int) -> int:
    return D * r + r + r * D + D


def test_vpetl_is_patt_on_keys_values_plus_a_parallel_ffn_adapter_reading_norm2():
    method = build_method("vpetl_unified", {"patt_dim": 4, "adapter_dim": 4})
    assert [c.name for c in method.components] == ["prefix", "parallel_adapter"]
    model = tiny_vit().eval()
    counts = attach_method(model, method)
    block = model.blocks[0]
    assert isinstance(block.attn, PrefixAttention) and block.attn.form == "patt" and block.attn.scale == 0.8
    assert isinstance(block.mlp, ParallelAdapter) and block.mlp.scale == 0.1
    assert isinstance(block.norm2, torch.nn.LayerNorm)  # the branch reads the FFN input, after norm2
    patt = (D * 4 + 4) + (4 * 2 * D + 2 * D)
    assert counts.trainable_params_without_head == DEPTH * (patt + bottleneck(4))
    h = torch.randn(2, 5, D)
    with torch.no_grad():
        block.mlp.adapter.up.weight.normal_()
        torch.testing.assert_close(block.mlp(h), block.mlp.base_layer(h) + 0.1 * block.mlp.adapter(h))


def test_u_tuning_default_is_parallel_prefix_plus_ffn_adapter():
    method = build_method("u_tuning")
    assert [c.name for c in method.components] == ["prefix", "parallel_adapter"]
    assert method.components[0].config.form == "direct" and method.components[0].config.length == 10


def test_u_tuning_on_all_three_operations_is_identity_at_init_with_adapters():
    options = {"mha": "adapter", "mha_dim": 2, "ffn_dim": 3, "block_dim": 4}
    method = build_method("u_tuning", options)
    base = tiny_vit().eval()
    model = tiny_vit()
    counts = attach_method(model, method)
    model.eval()
    block = model.blocks[1]
    assert isinstance(block, ParallelAdapter)  # beside the whole block, applied last
    assert isinstance(block.base_layer.attn, ParallelAdapter) and isinstance(
        block.base_layer.mlp, ParallelAdapter
    )
    assert counts.trainable_params_without_head == DEPTH * (bottleneck(2) + bottleneck(3) + bottleneck(4))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x), atol=1e-6, rtol=0)  # every up projection starts at zero


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"mha": "none", "ffn_dim": 0}, "no tuner"),
        ({"mha": "lora"}, "mha 'lora' is not one of"),
        ({"ffn_dim": -1}, "ffn_dim must be an integer >= 0"),
    ],
)
def test_u_tuning_rejects_bad_options(options, needle):
    with pytest.raises(ConfigError, match=needle):
        build_method("u_tuning", options)


@pytest.mark.parametrize(
    ("options", "needle"), [({"patt_dim": 0}, "patt_dim"), ({"adapter_scale": 0}, "adapter_scale")]
)
def test_vpetl_rejects_bad_options(options, needle):
    with pytest.raises(ConfigError, match=needle):
        build_method("vpetl_unified", options)


def test_parallel_adapter_rejects_unknown_sites():
    with pytest.raises(ConfigError, match="attn, mlp, block"):
        build_method("parallel_adapter", {"sites": ["ffn"]})
