"""Memory and FLOPs that compare methods (engine/costs.py): hand-checkable cases, and that a measurement does not
carry one method's memory into the next."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from peftbench.assemble import MethodSpec, build_model, make_method
from peftbench.engine.costs import MB, LiveTensorPeak, StepProbe, forward_gflops, train_state_bytes
from tests.tiny_models import tiny_vit

CPU = torch.device("cpu")


def _probe_step(model: nn.Module, x: torch.Tensor, loss_fn, optimizer=None):
    optimizer = optimizer or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    probe = StepProbe(model, optimizer, CPU)
    with probe.measure(x.shape[0]):
        loss = loss_fn(model(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return probe.costs, optimizer


def test_saved_activations_of_one_linear_and_one_gelu_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.GELU())
    x = torch.randn(5, 4)  # needs no grad: the Linear saves x (for its weight's gradient), not its weight
    costs, opt = _probe_step(model, x, lambda out: out.sum())  # sum saves no tensor
    # Linear: x (5 x 4 fp32); GELU: its input, the Linear's output (5 x 3 fp32); parameters are not activations
    assert costs.saved_activation_mb * MB == 5 * 4 * 4 + 5 * 3 * 4
    assert costs.saved_activation_mb_per_image * MB == (5 * 4 * 4 + 5 * 3 * 4) / 5
    # parameters (15), gradients (15), AdamW's two moments (30) in fp32, and its two step counters
    n = sum(p.numel() for p in model.parameters())
    assert costs.train_state_mb * MB == train_state_bytes(opt) == 4 * n * 4 + 2 * 4
    # forward 2 * 5 * 4 * 3 multiply-adds, backward the weight gradient only (x needs none): 2 * 5 * 4 * 3
    assert costs.train_step_gflops * 1e9 * 5 == pytest.approx(2 * (2 * 5 * 4 * 3))


def test_the_peak_counts_the_model_the_optimizer_and_the_steps_tensors_at_once():
    model = nn.Linear(256, 256, bias=False)
    x = torch.randn(64, 256)
    costs, _ = _probe_step(model, x, lambda out: out.square().mean())
    weight = 256 * 256 * 4
    # at least the weight, its gradient, AdamW's two moments and the (64 x 256) output live together
    assert costs.peak_train_mem_mb * MB >= 4 * weight + 64 * 256 * 4
    assert costs.peak_train_mem_mb * MB < 8 * weight  # and nothing like the process's RSS


def test_the_tracker_sees_tensors_go_and_views_share_memory():
    mode = LiveTensorPeak()
    with mode:
        a = torch.ones(1024)  # 4 KiB
        b = a.view(32, 32)  # a view: no new memory
        del a, b
        c = torch.ones(512)  # after a and b are freed
    assert mode.peak == 4096 and mode.current == 2048
    del c


def _costs_of(name: str, seed: int = 0):
    torch.manual_seed(seed)
    method = make_method(MethodSpec(name, name), "cifar", "vtab")
    model = tiny_vit(seed=seed)
    from peftbench.methods.attach import attach_method

    attach_method(model, method)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(2))
    return _probe_step(model.train(), x, lambda out: F.cross_entropy(out, y))[0]


def test_one_methods_peak_does_not_leak_into_the_next_measurement():
    alone = _costs_of("lora")
    _costs_of("full")  # a bigger step first, in the same process
    after = _costs_of("lora")
    assert abs(after.peak_train_mem_mb - alone.peak_train_mem_mb) <= 0.05 * alone.peak_train_mem_mb
    assert after.saved_activation_mb == alone.saved_activation_mb


def test_memory_ranks_methods_the_way_their_graphs_differ():
    lora, full, linear, lst = (_costs_of(n) for n in ("lora", "full", "linear", "lst"))
    assert full.saved_activation_mb > lora.saved_activation_mb > lst.saved_activation_mb > linear.saved_activation_mb
    assert full.train_state_mb > lora.train_state_mb > linear.train_state_mb
    assert full.peak_train_mem_mb > lora.peak_train_mem_mb > linear.peak_train_mem_mb


def test_a_merged_lora_costs_what_the_plain_backbone_costs():
    from peftbench.models import make_backbone_config

    backbone = make_backbone_config({"name": "vit_test", "timm_name": "vit_tiny_patch16_224", "img_size": 32,
                                     "model_kwargs": {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}})
    x = torch.randn(2, 3, 32, 32)
    lora = make_method(MethodSpec("lora", "lora"), None, None)
    adapted = build_model(backbone, lora, 5, weights=False).model
    plain = build_model(backbone, make_method(MethodSpec("linear", "linear"), None, None), 5, weights=False).model
    assert forward_gflops(adapted, x) > forward_gflops(plain, x)
    assert forward_gflops(lora.merge(adapted), x) == forward_gflops(plain, x)


def test_the_probed_step_computes_what_an_unprobed_one_does():
    def trained(probed: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 2))
        opt = torch.optim.AdamW(model.parameters(), lr=0.1)
        x = torch.randn(4, 6)
        for i in range(2):
            if probed and i == 0:
                _probe_step(model, x, lambda out: out.square().mean(), opt)
            else:
                loss = model(x).square().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(trained(True), trained(False), strict=True):
        assert torch.equal(a, b)


def test_the_resolved_precision_is_part_of_a_runs_identity():
    from peftbench.assemble import parse_spec
    from peftbench.config import compose
    from peftbench.identity import config_hash

    spec = parse_spec(compose(["trainer.device=cpu"]))  # precision: auto -> fp32 on a CPU, bf16 on CUDA
    assert spec.precision == "fp32"
    assert spec.config_hash == config_hash(spec.config, "fp32") != config_hash(spec.config, "bf16")
    # so a finished CPU run is not taken for a GPU run of the same config (which would autocast to bf16)
    assert parse_spec(compose(["trainer.device=cpu", "trainer.precision=bf16"])).precision == "bf16"
