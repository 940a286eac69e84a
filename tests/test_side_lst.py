"""LST's defining behaviour: no backward pass through the frozen backbone, ladders, and the head reading the side net."""

from __future__ import annotations

import pytest
import torch

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.addition.side.lst import LadderSideNetwork, SideOutput
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit

DIM, MLP_HIDDEN = 48, 192  # tiny ViT width and its MLP hidden width


def _prepared(name: str = "lst", options: dict | None = None):
    model = tiny_vit(seed=0)
    options = {"reduction_factor": 4} if options is None and name == "lst" else options
    attach_method(model, build_method(name, options))
    return model.train()


def _x(requires_grad: bool = False) -> torch.Tensor:
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return x.requires_grad_(requires_grad)


def _saved_for_backward(model) -> dict[int, tuple[int, torch.Size]]:
    """Every distinct storage autograd keeps for the backward pass of one training forward: ptr -> (bytes, shape)."""
    saved: dict[int, tuple[int, torch.Size]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved.setdefault(storage.data_ptr(), (storage.nbytes(), t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(_x()).logsumexp(-1).mean()
    return saved


def test_no_gradient_reaches_the_backbone_graph():
    model = _prepared()
    x = _x(requires_grad=True)  # if any backbone op were recorded, the loss would depend on x
    loss = model(x).logsumexp(-1).mean()
    (grad_x,) = torch.autograd.grad(loss, x, retain_graph=True, allow_unused=True)
    assert grad_x is None
    loss.backward()
    side = model.blocks
    assert all(p.grad is not None for p in side.side_blocks.parameters())
    assert side.gates.grad is not None and model.head.weight.grad is not None
    assert all(p.grad is None for p in side.base_layer.parameters())
    # contrast: a method inside the backbone (VPT) does backpropagate through it
    vpt = _prepared("vpt_deep", {"length": 2})
    x = _x(requires_grad=True)
    (grad_vpt,) = torch.autograd.grad(vpt(x).logsumexp(-1).mean(), x)
    assert grad_vpt.abs().sum() > 0


def test_backbone_activations_are_not_kept_for_backward():
    # side width 6, side MLP 24: no side width equals the backbone's
    model = _prepared(options={"reduction_factor": 8})
    lst = _saved_for_backward(model)
    full = _saved_for_backward(_prepared("full"))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    acts = [shape for ptr, (_, shape) in lst.items() if ptr not in params]  # activations, not weights
    # full fine-tuning keeps the backbone's MLP activations, LST none
    assert any(s and s[-1] == MLP_HIDDEN for _, s in full.values())
    assert not any(s and s[-1] == MLP_HIDDEN for s in acts)  # LST keeps none
    wide = [s for s in acts if s and s[-1] == DIM and s.numel() >= 4 * 17 * DIM]
    assert len(wide) == 3 + 1  # only the inputs of the 3 ladders and of the first downsample (B x N x D each)
    assert any(s and s[-1] == DIM // 8 for s in acts)  # the side network's own activations are kept
    assert sum(b for b, _ in lst.values()) < 0.5 * sum(b for b, _ in full.values())


def test_the_head_reads_the_side_network_not_the_backbone_output():
    model = _prepared().eval()
    assert isinstance(model.blocks, LadderSideNetwork) and isinstance(model.norm, SideOutput)
    x = _x()
    with torch.no_grad():
        before = model(x)
        model.norm.base_layer.weight.mul_(3.0)  # the backbone's final norm is bypassed
        model.blocks.base_layer[2].mlp.fc2.bias.add_(1.0)  # the last block still feeds the last ladder
        after_backbone = model(x)
        model.norm.upsample.weight.add_(0.1 * torch.randn_like(model.norm.upsample.weight))
        after_side = model(x)
        feats = model.forward_features(x)
    assert feats.shape == (4, 17, DIM)
    assert not torch.allclose(before, after_backbone)  # via the ladder of block 2
    assert not torch.allclose(after_backbone, after_side)
    model2 = _prepared().eval()
    with torch.no_grad():
        ref = model2(x)
        model2.norm.base_layer.weight.mul_(3.0)
        torch.testing.assert_close(model2(x), ref)


def test_gates_mix_backbone_and_side_evenly_at_init():
    model = _prepared()
    gates = torch.sigmoid(model.blocks.gates / model.blocks.temperature)
    torch.testing.assert_close(gates, torch.full((3,), 0.5))


def test_side_layers_choose_where_ladders_and_side_blocks_go():
    model = _prepared(options={"reduction_factor": 4, "side_layers": [0, 2]})
    side = model.blocks
    assert sorted(side.side_blocks) == sorted(side.downsamples) == ["0", "2"]
    assert side.gates.shape == (2,)
    assert side.side_blocks["0"].attn.qkv.in_features == DIM // 4
    assert model(_x()).shape == (4, 5)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"reduction_factor": 0}, "reduction_factor must be"),
        ({"reduction_factor": 5}, "valid factors"),  # 48 / 5 is no width
        ({"reduction_factor": 12}, "valid factors"),  # 48 / 12 = 4 is not divisible by the 3 heads
        ({"side_layers": [0, 7]}, "beyond"),
        ({"side_layers": []}, "non-empty"),
        ({"gate_temperature": 0.0}, "gate_temperature"),
    ],
)
def test_bad_options_raise_config_errors(options, match):
    with pytest.raises(ConfigError, match=match):
        attach_method(tiny_vit(), build_method("lst", options))


def test_swin_is_refused():
    with pytest.raises(MethodNotSupportedError, match="lst"):
        attach_method(tiny_swin(), build_method("lst"))
