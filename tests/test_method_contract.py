"""The contract every registered PEFT method passes, on one tiny timm model per architecture class and feature
(``tests.tiny_models.ARCHS``: ViT, Swin, DINOv2-, CLIP-, SigLIP-shaped ViTs, EVA-02- and DINOv3-shaped Eva,
ConvNeXt; CPU). Which architectures a method accepts is its row's (``tests.method_rows.Row``)."""

from __future__ import annotations

import pytest
import torch

from peftbench.errors import MethodNotSupportedError
from peftbench.methods.attach import attach_method
from peftbench.methods.base import PeftModule, method_owned_buffers
from peftbench.methods.registry import available_methods, build_method, get_method_class
from peftbench.methods.task_checkpoint import load_task_checkpoint, save_task_checkpoint
from tests.method_rows import all_rows
from tests.tiny_models import ARCHS, prepare_on_tiny_data, vit_b16

ROWS = {row.name: row for row in all_rows()}
BUILDERS = {arch: a.build for arch, a in ARCHS.items()}
CASES = [(name, arch) for name in ROWS for arch in ARCHS]


def _needs(name: str) -> None:
    for package in ROWS[name].requires:
        pytest.importorskip(package)


def _prepared(name: str, fam: str, seed: int = 0):
    _needs(name)
    model = BUILDERS[fam](seed=seed)
    method = build_method(name, ROWS[name].options_for(fam))
    counts = attach_method(model, method)
    prepare_on_tiny_data(model, method)  # methods that select on the training data (SCT, GPS); others: no-op
    return model.eval(), method, counts


def _perturb(model: torch.nn.Module, seed: int = 1) -> None:
    """Move every trainable tensor away from its init, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def _x(seed: int = 2) -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_every_registered_method_has_a_row():
    assert sorted(ROWS) == available_methods()


@pytest.mark.parametrize("name", sorted(ROWS))
def test_a_rows_families_are_the_methods(name):
    cls = get_method_class(name)
    declared = build_method(name, ROWS[name].options).backbones if cls.family == "unified" else cls.backbones
    assert set(ROWS[name].backbones) == set(declared or ROWS[name].backbones)
    assert set(ROWS[name].refused) | set(ROWS[name].arch_options) | set(ROWS[name].no_merge) <= set(ARCHS)


@pytest.mark.parametrize(("name", "fam"), CASES)
def test_shape_and_unsupported_backbones(name, fam):
    row = ROWS[name]
    if not row.supports(fam):
        with pytest.raises(MethodNotSupportedError, match=row.refused.get(fam, name)):
            _prepared(name, fam)
        return
    model, _, _ = _prepared(name, fam)
    assert model(_x()).shape == (4, 5)


@pytest.mark.parametrize(("name", "fam"), CASES)
def test_zero_init_is_identity_and_the_zero_tensor_is_pinned(name, fam):
    row = ROWS[name]
    if row.zero_params is None or not row.supports(fam):
        pytest.skip("not zero-initialised in its paper / not defined for this backbone")
    base = BUILDERS[fam](seed=0).eval()  # same seed: same backbone and head as the prepared model
    model, _, _ = _prepared(name, fam)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x), atol=1e-6, rtol=0)
    zero = [(n, p) for n, p in model.named_parameters() if n.endswith(row.zero_params)]
    assert zero, f"no parameter ends with {row.zero_params}"
    assert all(torch.count_nonzero(p) == 0 for _, p in zero)
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        for _, p in zero:
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        assert not torch.allclose(model(x), base(x), atol=1e-4)


@pytest.mark.parametrize(("name", "fam"), CASES)
def test_only_method_and_head_train(name, fam):
    row = ROWS[name]
    if not row.supports(fam):
        pytest.skip("not defined for this backbone")
    model, method, counts = _prepared(name, fam)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == counts.trainable_params
    assert counts.trainable_params == counts.trainable_params_without_head + counts.head_params
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in trainable}
    for step in range(3):
        opt.zero_grad()
        model(_x(step)).logsumexp(-1).mean().backward()
        if step == 0:
            missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
            assert not missing, f"trainable parameters outside the graph: {missing}"
        opt.step()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen_before[n]), f"frozen parameter {n} changed"
    if name != "full":
        # everything that is neither head nor frozen must be the method's own or a chosen subset
        owned = {id(p) for p in method.trainable_parameters(model)}
        head = {id(p) for p in model.get_classifier().parameters()}
        assert {id(p) for p in trainable} == owned | head


@pytest.mark.parametrize(("name", "fam"), CASES)
def test_checkpoint_holds_only_trained_tensors_and_reloads(name, fam, tmp_path):
    row = ROWS[name]
    if not row.supports(fam):
        pytest.skip("not defined for this backbone")
    model, _, _ = _prepared(name, fam)
    _perturb(model)
    path = tmp_path / "task.safetensors"
    save_task_checkpoint(model, path)
    from safetensors.torch import load_file

    saved = load_file(str(path))
    assert set(saved) == {n for n, p in model.named_parameters() if p.requires_grad} | set(method_owned_buffers(model))
    fresh, _, _ = _prepared(name, fam)
    load_task_checkpoint(fresh, path)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "fam"), CASES)
def test_merge_gives_a_plain_backbone_with_equal_outputs(name, fam):
    row = ROWS[name]
    if not row.supports(fam):
        pytest.skip("not defined for this backbone")
    model, method, _ = _prepared(name, fam)
    assert method.mergeable == row.mergeable, "the row and the method disagree on whether it merges"
    if not row.mergeable:
        with pytest.raises(MethodNotSupportedError, match="cannot be merged"):
            method.merge(model)
        return
    _perturb(model)
    x = _x()
    with torch.no_grad():
        expected = model(x)
    plain = BUILDERS[fam](seed=0)
    plain_count = sum(p.numel() for p in plain.parameters())
    if fam in row.no_merge:  # refused before anything changes
        with pytest.raises(MethodNotSupportedError, match=row.no_merge[fam]):
            method.merge(model)
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, atol=0, rtol=0)
        return
    merged = method.merge(model).eval()
    assert type(merged) is type(plain)
    assert not any(isinstance(m, PeftModule) for m in merged.modules())
    assert sum(p.numel() for p in merged.parameters()) == plain_count
    with torch.no_grad():
        assert (merged(x) - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", sorted(ROWS))
def test_vit_b16_parameter_count_matches_the_paper_and_the_formula(name):
    row = ROWS[name]
    _needs(name)
    assert row.vit_b16_params is not None and row.vit_b16_formula is not None, "pin the paper's count"
    model = vit_b16()
    counts = attach_method(model, build_method(name, row.vit_b16_options))
    # each against the code's count: the number the paper prints, and the analytic formula it comes from
    assert counts.trainable_params_without_head == row.vit_b16_params, f"the paper's count ({row.source})"
    assert counts.trainable_params_without_head == row.vit_b16_formula(), "the analytic formula"
    assert counts.head_params == row.vit_b16_head


@pytest.mark.parametrize("name", available_methods())
def test_a_methods_folder_is_its_family(name):
    from peftbench.methods.base import TAXONOMY
    from peftbench.methods.registry import get_method_class

    cls = get_method_class(name)
    assert cls.subfamily in TAXONOMY[cls.family]
    folder = cls.__module__.removeprefix("peftbench.methods.").split(".")[0]
    assert folder == ("baselines" if cls.family == "baseline" else cls.family), cls.__module__
