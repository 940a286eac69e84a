"""Which backbone parameters the specification methods (partial_k, bitfit, ln_tune, attn_tune) select."""

from __future__ import annotations

import pytest
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _trainable_without_head(model: nn.Module) -> set[int]:
    head = _ids(model.get_classifier().parameters())
    return {id(p) for p in model.parameters() if p.requires_grad and id(p) not in head}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_partial_k_trains_exactly_the_last_k_vit_blocks_and_the_final_norm(k):
    model = tiny_vit()
    attach_method(model, build_method("partial_k", {"k": k}))
    expected = _ids(p for b in model.blocks[-k:] for p in b.parameters()) | _ids(model.norm.parameters())
    assert _trainable_without_head(model) == expected
    frozen_block = model.blocks[0] if k < 3 else None
    if frozen_block is not None:
        assert not any(p.requires_grad for p in frozen_block.parameters())
    assert not model.patch_embed.proj.weight.requires_grad and not model.pos_embed.requires_grad


def test_partial_k_on_swin_trains_the_tail_from_the_first_selected_block():
    model = tiny_swin(seed=0)  # stages: [block0], [downsample, block1]
    attach_method(model, build_method("partial_k", {"k": 1}))
    # k = 1: only stage 1's block; its downsample lies before it and stays frozen
    stage1 = model.layers[1]
    assert _trainable_without_head(model) == _ids(stage1.blocks.parameters()) | _ids(model.norm.parameters())

    model = tiny_swin(seed=0)
    attach_method(model, build_method("partial_k", {"k": 2}))
    # k = 2: from stage 0's block on, so the PatchMerging between the stages trains too
    expected = (
        _ids(model.layers[0].blocks.parameters())
        | _ids(model.layers[1].downsample.parameters())
        | _ids(model.layers[1].blocks.parameters())
        | _ids(model.norm.parameters())
    )
    assert _trainable_without_head(model) == expected
    assert not model.patch_embed.proj.weight.requires_grad


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_partial_k_rejects_bad_k(k):
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        build_method("partial_k", {"k": k})


def test_partial_k_larger_than_the_depth_names_the_valid_range():
    with pytest.raises(ConfigError, match=r"only 3 blocks; choose k in 1\.\.3"):
        attach_method(tiny_vit(), build_method("partial_k", {"k": 4}))


def test_bitfit_selects_every_bias_of_linear_conv_and_layernorm_and_nothing_else():
    model = tiny_vit()
    attach_method(model, build_method("bitfit"))
    expected = {
        id(m.bias)
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm)) and m is not model.head
    }
    assert _trainable_without_head(model) == expected
    # the patch-embedding bias, a LayerNorm beta and the final-norm beta are in; no weight is
    assert model.patch_embed.proj.bias.requires_grad and model.blocks[0].norm1.bias.requires_grad
    assert model.norm.bias.requires_grad and not model.norm.weight.requires_grad
    assert not any(
        p.requires_grad for n, p in model.named_parameters() if n.endswith("weight") and "head" not in n
    )


def test_bitfit_on_swin_leaves_the_relative_position_bias_table_frozen():
    model = tiny_swin()
    counts = attach_method(model, build_method("bitfit"))
    table = model.layers[0].blocks[0].attn.relative_position_bias_table
    assert not table.requires_grad
    n_bias = sum(
        m.bias.numel()
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm))
        and m.bias is not None
        and m is not model.head.fc
    )
    assert counts.trainable_params_without_head == n_bias


@pytest.mark.parametrize("build", [tiny_vit, tiny_swin])
def test_ln_tune_trains_every_layernorm_gamma_and_beta_only(build):
    model = build()
    counts = attach_method(model, build_method("ln_tune"))
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert _trainable_without_head(model) == _ids(p for m in norms for p in (m.weight, m.bias))
    assert counts.trainable_params_without_head == sum(2 * m.weight.numel() for m in norms)


def test_attn_tune_trains_qkv_proj_with_biases_and_the_pos_embed_but_no_mlp():
    model = tiny_vit()
    attach_method(model, build_method("attn_tune"))
    attn = _ids(
        p
        for b in model.blocks
        for p in (b.attn.qkv.weight, b.attn.qkv.bias, b.attn.proj.weight, b.attn.proj.bias)
    )
    assert _trainable_without_head(model) == attn | {id(model.pos_embed)}
    assert not any(p.requires_grad for b in model.blocks for p in b.mlp.parameters())
    assert not model.patch_embed.proj.weight.requires_grad and not model.cls_token.requires_grad


def test_attn_tune_without_pos_embed():
    model = tiny_vit()
    counts = attach_method(model, build_method("attn_tune", {"train_pos_embed": False}))
    assert not model.pos_embed.requires_grad
    d = 48
    assert counts.trainable_params_without_head == 3 * (d * 3 * d + 3 * d + d * d + d)


def test_attn_tune_on_swin_trains_the_window_attention_including_its_position_table():
    model = tiny_swin()
    attach_method(model, build_method("attn_tune"))
    blocks = [b for stage in model.layers for b in stage.blocks]
    assert _trainable_without_head(model) == _ids(p for b in blocks for p in b.attn.parameters())
    assert blocks[0].attn.relative_position_bias_table.requires_grad
