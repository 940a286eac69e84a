"""VPT's defining behaviour: where prompts go, that deep replaces them at every layer, init, pooling, length presets."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from peftbench.errors import ConfigError
from peftbench.methods.addition.prompt.vpt import DeepPromptBlock, PromptInserter
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_vit

P = 3  # prompt length in these tests
DIM, DEPTH, TOKENS = 48, 3, 1 + 16  # tiny ViT: CLS + 4x4 patches


def _prompted(name: str, **options):
    model = tiny_vit(seed=0)
    attach_method(model, build_method(name, {"length": P, **options}))
    return model.eval()


def _block_inputs(model) -> list[torch.Tensor]:
    """Record what each original timm block receives (the base layer inside any wrapper)."""
    seen: list[torch.Tensor] = []
    blocks = [b.base_layer if isinstance(b, DeepPromptBlock) else b for b in model.blocks]
    handles = [b.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach())) for b in blocks]
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    for h in handles:
        h.remove()
    return seen


def test_shallow_inserts_prompts_after_cls_once_and_keeps_the_patch_tokens():
    model = _prompted("vpt_shallow")
    base = tiny_vit(seed=0).eval()
    (first, second, _) = _block_inputs(model)
    base_first = _block_inputs(base)[0]  # (B, 17, D)
    assert first.shape == (2, TOKENS + P, DIM)
    prompt = model.norm_pre.prompt
    torch.testing.assert_close(first[:, 1 : 1 + P], prompt.expand(2, -1, -1))
    torch.testing.assert_close(first[:, :1], base_first[:, :1])  # CLS (+pos) untouched, still first
    torch.testing.assert_close(first[:, 1 + P :], base_first[:, 1:])  # patch tokens in order
    assert not any(isinstance(b, DeepPromptBlock) for b in model.blocks)
    assert not torch.allclose(second[:, 1 : 1 + P], prompt.expand(2, -1, -1))  # block 0 transformed them


def test_deep_replaces_the_prompt_outputs_with_fresh_prompts_before_every_block():
    model = _prompted("vpt_deep")
    assert isinstance(model.norm_pre, PromptInserter)
    assert [isinstance(b, DeepPromptBlock) for b in model.blocks] == [False, True, True]
    inputs = _block_inputs(model)  # inputs of blocks 0, 1, 2
    prompts = [model.norm_pre.prompt, model.blocks[1].prompt, model.blocks[2].prompt]
    for i, x in enumerate(inputs):
        assert x.shape == (2, TOKENS + P, DIM)
        torch.testing.assert_close(x[:, 1 : 1 + P], prompts[i].expand(2, -1, -1))
    # the tokens that are not prompts flow through unchanged from block i-1's output
    with torch.no_grad():
        out0 = model.blocks[0](inputs[0])
    torch.testing.assert_close(inputs[1][:, :1], out0[:, :1])
    torch.testing.assert_close(inputs[1][:, 1 + P :], out0[:, 1 + P :])
    n_params = sum(p.numel() for p in (model.norm_pre.prompt, model.blocks[1].prompt, model.blocks[2].prompt))
    assert n_params == DEPTH * P * DIM  # L p D in all


def test_prompts_change_the_prediction_which_reads_the_cls_token():
    model = _prompted("vpt_deep")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        model.blocks[2].prompt.add_(torch.randn(P, DIM))  # not a constant shift: LayerNorm would remove it
        after = model(x)
        feats = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(feats), model.head(feats[:, 0]))  # head sees CLS only
    assert not torch.allclose(before, after)


def test_init_is_uniform_within_the_xavier_bound_of_a_patch_projection():
    model = tiny_vit(seed=0)
    attach_method(model, build_method("vpt_deep", {"length": 200}))
    bound = math.sqrt(6.0 / (3 * 8 * 8 + DIM))  # patch 8x8 on the tiny ViT (16x16 on ViT-B/16)
    prompt = model.blocks[1].prompt
    assert prompt.abs().max() <= bound
    assert prompt.abs().max() > 0.9 * bound and abs(prompt.mean().item()) < 0.1 * bound
    assert not torch.equal(prompt, model.blocks[2].prompt)  # an independent set per layer


def test_prompt_dropout_only_in_training():
    model = _prompted("vpt_deep", dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), model(x))
    assert build_method("vpt_shallow").config.dropout == 0.0  # official: no dropout for shallow
    assert build_method("vpt_deep").config.dropout == 0.1


@pytest.mark.parametrize("pool", ["avg", "map"])
@pytest.mark.parametrize("name", ["vpt_shallow", "vpt_deep"])
def test_heads_that_pool_over_tokens_pool_the_tokens_they_pool_without_prompts(pool, name):
    import timm

    from tests.tiny_models import VIT_KWARGS

    torch.manual_seed(0)
    plain = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, global_pool=pool, **VIT_KWARGS)
    model = copy.deepcopy(plain)
    attach_method(model, build_method(name, {"length": P}))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(x)  # prompt outputs dropped after the final norm
        assert tokens.shape == plain.forward_features(x).shape
        # the head pools exactly these tokens: its output is the plain head on them
        torch.testing.assert_close(model.forward_head(tokens), plain.forward_head(tokens), rtol=0, atol=0)


def test_the_paper_recipe_gives_each_task_its_prompt_length():
    from peftbench.assemble import parse_spec
    from peftbench.config import compose

    lengths = {}
    for task in ("dmlab", "sun397", "eurosat", "oxford_flowers102"):
        args = ["experiment=vpt/vpt_deep", f"dataset=vtab/{task}"]
        spec = parse_spec(compose(args), command_line=args)
        lengths[task] = build_method(spec.method.name, spec.method.options).config.length
    # dmlab, sun397, eurosat: confirmed by the official demo notebook ("the same from our paper")
    assert lengths == {"dmlab": 100, "sun397": 5, "eurosat": 100, "oxford_flowers102": 1}
    args = ["experiment=vpt/vpt_deep", "dataset=vtab/sun397", "method.length=7"]  # the command line wins
    assert parse_spec(compose(args), command_line=args).method.options["length"] == 7
    model = tiny_vit(seed=0)
    attach_method(model, build_method("vpt_deep", {"length": 1}))
    assert model.blocks[1].prompt.shape == (1, DIM)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"length": 0}, "length must be"),
        ({"length": "long"}, "length must be"),
        ({"length": "auto"}, "length must be"),
        ({"lengths_per_task": {"cifar": 1}}, "has no option"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_options_raise_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        method = build_method("vpt_deep", options)
        attach_method(tiny_vit(), method)
