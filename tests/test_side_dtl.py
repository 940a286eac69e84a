"""DTL's defining behaviour: the side output re-entering the later blocks, where autograd runs and where it does not,
the reference's pooling, DTL+'s DWConv and the Swin stages."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from peftbench.engine.costs import MB, StepProbe
from peftbench.errors import ConfigError
from peftbench.methods.addition.side.dtl import CompactSideNetwork, PatchMeanNorm, swish
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit

DIM, MLP_HIDDEN = 48, 192  # tiny ViT width and MLP hidden width (3 blocks: add_from defaults to 1)


def _dtl(options: dict | None = None, builder=tiny_vit):
    model = builder(seed=0)
    attach_method(model, build_method("dtl", options))
    return model


def _x() -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _move_maps(model, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.blocks.maps.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


def _tokens(model, x: torch.Tensor) -> torch.Tensor:
    return model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))  # (B, 17, D)


def test_swish_with_beta_100_by_hand():
    h = torch.tensor([-1.0, 0.0, 0.01, 1.0])
    expected = torch.tensor([0.0, 0.0, 0.01 / (1 + torch.e**-1), 1.0])  # 0.01 * sigmoid(1) = 0.0073106
    torch.testing.assert_close(swish(h, 100.0), expected, atol=1e-6, rtol=0)


def test_defaults_read_every_block_and_add_on_the_second_half():
    model = _dtl()
    side = model.blocks
    assert isinstance(side, CompactSideNetwork) and isinstance(model.norm, PatchMeanNorm)
    assert sorted(side.maps) == ["0", "1", "2"] and side.adds == {1, 2}  # depth 3: add_from = 3 // 2
    assert side.fusion is None and side.maps["0"].down.weight.shape == (2, DIM)
    assert all(torch.count_nonzero(m.up.weight) == 0 for m in side.maps.values())  # B = 0: no side output at init


def test_the_running_sum_re_enters_the_stream_after_add_from_by_hand():
    model = _dtl().eval()
    _move_maps(model)
    x = _x()
    with torch.no_grad():
        z, h = _tokens(model, x), 0.0
        for i, block in enumerate(model.blocks.base_layer):
            m = model.blocks.maps[str(i)]
            h = h + z @ m.down.weight.T @ m.up.weight.T  # the map reads the block's input
            z = block(z)
            if i >= 1:
                z = z + h * torch.sigmoid(100.0 * h)  # added after blocks 1 and 2
        expected = model.head(model.norm.base_layer(z[:, 1:].mean(1)))  # patch mean, then the final norm
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)


def test_at_init_it_is_the_frozen_backbone_with_the_references_pooling():
    base, x = tiny_vit(seed=0).eval(), _x()
    with torch.no_grad():
        z = base.blocks(_tokens(base, x))
        torch.testing.assert_close(_dtl().eval()(x), base.head(base.norm(z[:, 1:].mean(1))), atol=1e-6, rtol=0)
        torch.testing.assert_close(_dtl({"pool": "token"}).eval()(x), base(x), atol=1e-6, rtol=0)


def _saved_for_backward(model) -> list[torch.Size]:
    shapes: dict[int, torch.Size] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        shapes.setdefault(t.untyped_storage().data_ptr(), t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(_x()).logsumexp(-1).mean()
    return list(shapes.values())


def test_blocks_up_to_add_from_run_without_autograd_and_later_blocks_are_backpropagated():
    model = _dtl().train()  # adds after blocks 1 and 2
    _move_maps(model)  # with B = 0 the A gradients are zero
    needs_grad = []
    for block in model.blocks.base_layer:
        block.register_forward_hook(lambda mod, inp, out: needs_grad.append(out.requires_grad))
    model(_x()).logsumexp(-1).mean().backward()
    assert needs_grad == [False, False, True]  # only block 2's input carries the side output
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.blocks.maps.parameters())
    assert all(p.grad is None for p in model.blocks.base_layer.parameters())
    # what autograd keeps of the backbone: MLP-hidden-width tensors exist only in backpropagated blocks
    wide = {a: sum(s[-1] == MLP_HIDDEN for s in _saved_for_backward(_dtl({"add_from": a}).train())) for a in (0, 1, 2)}
    assert wide[2] == 0 and wide[0] == 2 * wide[1] > 0  # blocks 1-2, block 2, none


def test_the_cost_probe_ranks_dtl_between_a_linear_probe_and_lora():
    def saved(name: str, options: dict | None = None) -> float:
        model = tiny_vit(seed=0)
        attach_method(model, build_method(name, options))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
        probe = StepProbe(model.train(), opt, torch.device("cpu"))
        y = torch.randint(0, 5, (4,), generator=torch.Generator().manual_seed(2))
        with probe.measure(4):
            loss = F.cross_entropy(model(_x()), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return probe.costs.saved_activation_mb * MB

    by_add = [saved("dtl", {"add_from": a}) for a in (2, 1, 0)]  # 0, 1, 2 backpropagated blocks
    assert saved("linear") < by_add[0] < by_add[1] < by_add[2] < saved("lora")
    assert by_add[2] - by_add[1] == by_add[1] - by_add[0]  # each backpropagated block keeps the same bytes


def test_dtl_plus_convolves_the_patch_grid_and_passes_the_class_token():
    model = _dtl({"fusion_size": 3})
    conv = model.blocks.fusion
    assert conv.weight.shape == (DIM, 1, 3, 3) and conv.bias is None
    s = torch.randn(2, 17, DIM, generator=torch.Generator().manual_seed(3))
    out = model.blocks._fuse(s)
    torch.testing.assert_close(out[:, 0], s[:, 0])  # the class token is not convolved
    grid = s[:, 1:].reshape(2, 4, 4, DIM).permute(0, 3, 1, 2)
    expected = F.conv2d(grid, conv.weight, padding=1, groups=DIM).permute(0, 2, 3, 1).reshape(2, 16, DIM)
    torch.testing.assert_close(out[:, 1:], expected)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 3 * 2 * 2 * DIM + DIM * 9 + 5 * DIM + 5


def test_swin_stages_keep_their_own_sum_and_only_stages_with_adds_get_maps():
    model = _dtl(builder=tiny_swin)  # 2 blocks (one per stage): add_from = 1
    first, second = model.layers[0].blocks, model.layers[1].blocks
    assert not isinstance(first, CompactSideNetwork)  # a map there would reach no add: the sum restarts per stage
    assert isinstance(second, CompactSideNetwork) and sorted(second.maps) == ["0"] and second.adds == {0}
    model = _dtl({"add_from": 0, "fusion_size": 3}, builder=tiny_swin)
    widths = [stage.blocks.maps["0"].down.in_features for stage in model.layers]
    assert widths == [24, 48] and [stage.blocks.fusion.weight.shape[0] for stage in model.layers] == [24, 48]
    assert model(_x()).shape == (4, 5)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rank": 0}, "rank must be"),
        ({"beta": 0}, "beta must be"),
        ({"read_from": 2, "add_from": 1}, "read_from=2 is after add_from=1"),
        ({"add_from": 3}, "does not fit this backbone's 3 blocks"),
        ({"read_from": 2}, "does not fit"),  # add_from null -> 1 on 3 blocks
        ({"fusion_size": -1}, "fusion_size must be"),
        ({"pool": "max"}, "pool 'max' is not one of avg, token"),
    ],
)
def test_bad_options_raise_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        _dtl(options)


def test_class_token_pooling_on_swin_is_refused():
    with pytest.raises(ConfigError, match="Swin has no class token"):
        _dtl({"pool": "token"}, builder=tiny_swin)
