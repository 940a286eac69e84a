"""HST's defining behaviour: meta tokens in every block, a side network on the image that the head reads, backward
through the whole backbone, and BatchNorm statistics that travel with the task checkpoint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.addition.side.hst import (
    HierarchicalSideNetwork,
    HSTConfig,
    ImageTap,
    SideBlock,
    SidePool,
    _stage_ends,
)
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from peftbench.methods.task_checkpoint import load_task_checkpoint, save_task_checkpoint
from tests.tiny_models import tiny_swin, tiny_vit

TINY = {"dims": [8, 12, 16], "heads": [2, 2, 4]}  # three side stages, one per block of the 3-block tiny ViT
DIM, MLP_HIDDEN = 48, 192


def _hst(options: dict | None = None):
    model = tiny_vit(seed=0)
    counts = attach_method(model, build_method("hst", {**TINY, **(options or {})}))
    return model, counts


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_structure_the_head_reads_the_last_stage_and_stages_split_the_blocks():
    model, counts = _hst()
    assert isinstance(model.patch_embed, ImageTap) and isinstance(model.blocks, HierarchicalSideNetwork)
    assert isinstance(model.norm, SidePool) and model.norm.bn.affine is False
    assert model.get_classifier().in_features == 16 and counts.head_params == 17 * 5
    assert [len(stage.blocks) for stage in model.blocks.stages] == [1, 1, 1]
    assert model.blocks.meta.shape == (3, 1, DIM)
    assert _stage_ends(HSTConfig(), 12) == [2, 5, 8, 11] and _stage_ends(HSTConfig(), 6) == [0, 2, 3, 5]
    assert model(_x()).shape == (4, 5)


def test_gradients_run_back_through_the_whole_backbone():
    model, _ = _hst()
    model.train()(_x()).logsumexp(-1).mean().backward()
    blocks = model.blocks.base_layer
    # the first block's meta token and LayerNorms are reached: the backward passes every block
    assert model.blocks.meta.grad[0].abs().sum() > 0 and blocks[0].norm1.weight.grad.abs().sum() > 0
    assert blocks[0].attn.qkv.weight.grad is None and not blocks[0].attn.qkv.weight.requires_grad
    assert model.blocks.stages[0].embed.proj[0].weight.grad.abs().sum() > 0  # the stem sees the image
    # so autograd keeps the backbone's MLP activations (no memory saving, unlike LST)
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(t.shape) or t, lambda t: t):
        model(_x()).sum()
    assert any(s[-1] == MLP_HIDDEN for s in shapes)


def test_the_classifier_reads_the_side_network_and_not_the_backbone_output():
    model, _ = _hst()
    model.eval()
    x = _x()
    with torch.no_grad():
        before = model(x)
        model.norm.base_layer.weight.mul_(3.0)  # the backbone's final norm is unused
        torch.testing.assert_close(model(x), before)
        model.blocks.base_layer[2].mlp.fc2.bias.add_(1.0)  # the last block feeds the last stage
        after_backbone = model(x)
        stem = model.blocks.stages[0].embed.proj[0].weight  # the stem reads the image (a plain scale would be
        stem.add_(0.5 * torch.randn(stem.shape, generator=torch.Generator().manual_seed(1)))  # undone by its norms)
        after_stem = model(x)
    assert not torch.allclose(before, after_backbone) and not torch.allclose(after_backbone, after_stem)


def test_a_side_block_attends_over_its_two_register_tokens_by_hand():
    torch.manual_seed(0)
    block = SideBlock(8, 2, 4.0, True, 0.0).eval()
    x, feat = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    reg = torch.randn(2, 1, 8)
    with torch.no_grad():
        out = block(x, torch.cat([reg, reg], 1), feat)  # equal keys: uniform attention, every query gets v(reg)
        mid = x + block.proj(block.v(reg)) + feat
        torch.testing.assert_close(out, mid + block.mlp(block.norm2(mid)))


def test_bridging_before_the_resize_equals_the_references_resize_then_bridge():
    torch.manual_seed(0)
    bridge = torch.nn.Linear(48, 8)
    f = torch.randn(2, 48, 4, 4)
    ref = bridge(F.interpolate(f, size=(8, 8), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2))
    ours = F.interpolate(bridge(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, 8, 4, 4), size=(8, 8),
                         mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_batchnorm_statistics_travel_with_the_task_checkpoint(tmp_path):
    model, _ = _hst()
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(_x(seed))  # updates the stem's and the pool's running statistics, no parameter changes
    model.eval()
    path = tmp_path / "task.safetensors"
    save_task_checkpoint(model, path)
    fresh, _ = _hst()
    fresh.eval()
    x = _x(7)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x), atol=1e-4)  # same parameters, initial statistics
        load_task_checkpoint(fresh, path)
        torch.testing.assert_close(fresh(x), model(x), atol=1e-6, rtol=0)


def test_the_backbone_block_norms_are_an_option():
    _, with_norms = _hst()
    _, without = _hst({"tune_block_norms": False})
    assert with_norms.trainable_params_without_head - without.trainable_params_without_head == 3 * 2 * 2 * DIM


def test_the_blocks_alone_cannot_run_without_the_image():
    model, _ = _hst()
    with pytest.raises(RuntimeError, match="needs the image"):
        model.blocks(torch.randn(1, 17, DIM))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"heads": [2, 2]}, "equal length"),
        ({"heads": [3, 2, 4]}, "not divisible"),
        ({"stage_ends": [1, 1, 2]}, "increasing block indices"),
        ({"stage_ends": [0, 1, 1]}, "increasing block indices"),
        ({"stage_ends": [0, 1]}, "increasing block indices"),
        ({"dims": [8, 8, 8, 8], "heads": [2, 2, 2, 2]}, "a backbone block per side stage"),
        ({"meta_tokens": 0}, "meta_tokens must be"),
    ],
)
def test_bad_options_raise_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        _hst(options)


def test_stage_ends_must_end_at_the_last_block_and_swin_is_refused():
    with pytest.raises(ConfigError, match="last block"):
        attach_method(tiny_vit(), build_method("hst", {**TINY, "stage_ends": [0, 1, 5]}))
    with pytest.raises(MethodNotSupportedError, match="hst"):
        attach_method(tiny_swin(), build_method("hst"))
