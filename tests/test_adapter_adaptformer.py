"""AdaptFormer: the parallel branch reads the block's stream before ``norm2`` and is scaled by s."""

from __future__ import annotations

import pytest
import torch

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.layers.bottleneck import ParallelAdapter
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit

D = 48  # tiny ViT width


def _perturb(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_branch_reads_the_pre_norm_stream_and_is_scaled():
    model = tiny_vit()
    attach_method(model, build_method("adaptformer", {"dim": 4}))
    model.eval()
    _perturb(model)
    block = model.blocks[2]
    assert isinstance(block.norm2, torch.nn.Identity)
    norm, mlp, branch = block.mlp.base_layer.norm, block.mlp.base_layer.mlp, block.mlp.adapter
    x = torch.randn(2, 17, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x1 = x + block.attn(block.norm1(x))  # the stream after the attention residual
        down = torch.relu(branch.down(x1))
        expected = x1 + mlp(norm(x1)) + 0.1 * branch.up(down)
        torch.testing.assert_close(block(x), expected, atol=1e-6, rtol=0)
        # the post-norm input (what the wrapped mlp alone would see) gives a different block
        post_norm = x1 + mlp(norm(x1)) + 0.1 * branch.up(torch.relu(branch.down(norm(x1))))
        assert not torch.allclose(block(x), post_norm, atol=1e-4)


def test_the_moved_norm_stays_frozen_and_out_of_the_method_parameters():
    model = tiny_vit()
    method = build_method("adaptformer", {"dim": 4})
    counts = attach_method(model, method)
    owned = {id(p) for p in method.trainable_parameters(model)}
    for block in model.blocks:
        assert isinstance(block.mlp, ParallelAdapter)
        for p in block.mlp.base_layer.parameters():  # original norm2 and mlp
            assert not p.requires_grad and id(p) not in owned
    assert counts.trainable_params_without_head == 3 * (D * 4 + 4 + 4 * D + D)
    # down kaiming-uniform (non-zero), up and both biases zero
    ad = model.blocks[0].mlp.adapter
    assert torch.count_nonzero(ad.down.weight) > 0
    assert torch.count_nonzero(ad.down.bias) == 0 and torch.count_nonzero(ad.up.bias) == 0


def test_layernorm_in_adds_a_trainable_layernorm_on_the_branch_input():
    model = tiny_swin()
    counts = attach_method(model, build_method("adaptformer", {"dim": 2, "layernorm": "in"}))
    widths = [24, 48]  # tiny Swin: one block per stage
    assert counts.trainable_params_without_head == sum(w * 2 + 2 + 2 * w + w + 2 * w for w in widths)
    assert all(isinstance(b.mlp.adapter.norm, torch.nn.LayerNorm) for s in model.layers for b in s.blocks)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_swin_branch_also_reads_the_pre_norm_stream():
    model = tiny_swin()
    attach_method(model, build_method("adaptformer", {"dim": 2, "scale": 2.0}))
    model.eval()
    _perturb(model)
    block = model.layers[0].blocks[0]
    x = torch.randn(2, 8, 8, 24, generator=torch.Generator().manual_seed(2))  # (B, H, W, C)
    with torch.no_grad():
        x1 = (x + block._attn(block.norm1(x))).reshape(2, -1, 24)
        b = block.mlp
        expected = (
            x1 + b.base_layer.mlp(b.base_layer.norm(x1)) + 2.0 * b.adapter.up(torch.relu(b.adapter.down(x1)))
        )
        torch.testing.assert_close(block(x), expected.reshape(2, 8, 8, 24), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"scale": 0}, "scale must be a number > 0"),
        ({"layernorm": "out"}, "in, none"),
        ({"dim": 2.5}, "integer"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("adaptformer", options)
