"""DiffFit: gamma scales exactly the attention and MLP residual branches of the chosen blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.partial.specification.difffit import BranchScale
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _scaled_blocks(model: nn.Module, blocks) -> list[int]:
    return [i for i, b in enumerate(blocks) if isinstance(b.drop_path1, BranchScale)]


@pytest.mark.parametrize(("choice", "expected"), [("first_half", [0, 1]), ("all", [0, 1, 2]), ("none", [])])
def test_scale_factors_go_to_the_chosen_blocks(choice, expected):
    model = tiny_vit()
    counts = attach_method(model, build_method("difffit", {"scale_blocks": choice}))
    assert _scaled_blocks(model, model.blocks) == expected
    assert all(isinstance(model.blocks[i].drop_path2, BranchScale) for i in expected)
    d, n_ln = 48, 2 * 3 + 1
    biases = sum(
        m.bias.numel()
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm)) and m is not model.head
    )
    assert counts.trainable_params_without_head == biases + n_ln * d + len(expected) * 2 * d


def test_gamma_multiplies_the_attention_and_mlp_branches_of_a_block():
    model = tiny_vit().eval()
    attach_method(model, build_method("difffit", {"scale_blocks": "all"}))
    block = model.blocks[1]
    g1, g2 = torch.rand(48) + 0.5, torch.rand(48) - 2.0
    with torch.no_grad():
        block.drop_path1.gamma.copy_(g1)
        block.drop_path2.gamma.copy_(g2)
        x = torch.randn(2, 17, 48)  # (B, N, D)
        h = x + g1 * block.attn(block.norm1(x))
        expected = h + g2 * block.mlp(block.norm2(h))
        torch.testing.assert_close(block(x), expected)


def test_identity_at_init_and_which_backbone_tensors_train():
    base = tiny_vit(seed=0).eval()
    model = tiny_vit(seed=0).eval()
    attach_method(model, build_method("difffit"))
    with torch.no_grad():
        torch.testing.assert_close(model(X), base(X), atol=1e-6, rtol=0)
    assert model.blocks[0].norm1.weight.requires_grad and model.blocks[0].norm1.bias.requires_grad
    assert model.blocks[0].attn.qkv.bias.requires_grad and not model.blocks[0].attn.qkv.weight.requires_grad
    assert model.patch_embed.proj.bias.requires_grad and not model.pos_embed.requires_grad


def test_swin_branches_are_scaled_with_the_stage_width():
    model = tiny_swin().eval()
    attach_method(model, build_method("difffit", {"scale_blocks": "all"}))
    widths = [b.drop_path1.gamma.numel() for stage in model.layers for b in stage.blocks]
    assert widths == [24, 48]
    assert model(X).shape == (2, 5)


@pytest.mark.parametrize("options", [{"scale_blocks": "last_half"}, {"scale_init": "one"}])
def test_bad_options_raise_config_errors(options):
    with pytest.raises(ConfigError, match="difffit"):
        build_method("difffit", options)
