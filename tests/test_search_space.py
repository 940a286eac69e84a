"""Searched methods (NOAH, GLoRA): supernet sampling, subnet counts, weight inheritance, merge, evolution, resume."""

from __future__ import annotations

import json
import random

import pytest
import torch

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from peftbench.methods.task_checkpoint import save_task_checkpoint
from peftbench.methods.unified.search.evolution import Evolution, EvolutionConfig, arch_key
from peftbench.methods.unified.search.noah import ElasticPromptBlock
from peftbench.methods.unified.search.noah_published import PUBLISHED_VTAB
from tests.tiny_models import tiny_swin, tiny_vit, vit_b16

# method -> (options of the tiny tests, backbone builders it is defined for)
SEARCHED = {
    "noah": ({"values": [1, 2, 3], "init_width": 4}, (tiny_vit,)),
    "glora": ({"rank": 2}, (tiny_vit, tiny_swin)),
}
CASES = [(name, build) for name, (_, builders) in SEARCHED.items() for build in builders]


def _model(name: str, build, arch="supernet", seed: int = 0, **extra):
    model = build(seed=seed)
    method = build_method(name, {**SEARCHED[name][0], "arch": arch, **extra})
    counts = attach_method(model, method)
    return model, method, counts


def _x(seed: int = 2) -> torch.Tensor:
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _perturb(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(("name", "build"), CASES)
def test_fixed_subnet_count_equals_the_search_count(name, build):
    sup, method, _ = _model(name, build)
    n = method.positions(sup)
    rng = random.Random(0)
    for _ in range(4):
        arch = method.sample(n, rng)
        _, _, counts = _model(name, build, arch=arch)
        assert counts.trainable_params_without_head == method.arch_params(sup, arch)


@pytest.mark.parametrize(("name", "build"), CASES)
def test_supernet_draws_an_architecture_per_training_step_and_runs_the_largest_in_eval(name, build):
    model, method, _ = _model(name, build)
    n = method.positions(model)
    modules = method.elastic_modules(model)

    def active() -> str:
        return json.dumps({s: [m.choice[s] for m in mods] for s, mods in modules.items()})

    model.train()
    random.seed(0)
    drawn = set()
    for step in range(6):
        model(_x(step))
        drawn.add(active())
    assert len(drawn) > 1  # a new architecture per forward pass
    model.eval()
    model(_x())
    assert json.loads(active()) == method.largest(n)


@pytest.mark.parametrize(("name", "build"), CASES)
def test_inherited_subnet_equals_the_supernet_running_that_architecture(name, build, tmp_path):
    sup, method, _ = _model(name, build)
    _perturb(sup)
    path = tmp_path / "task.safetensors"
    save_task_checkpoint(sup, path)
    arch = method.sample(method.positions(sup), random.Random(3))
    sup.eval()
    method.activate(sup, arch)
    sub, _, _ = _model(name, build, arch=arch, inherit=str(path))
    sub.eval()
    with torch.no_grad():
        torch.testing.assert_close(sub(_x()), sup(_x()), atol=1e-5, rtol=0)


@pytest.mark.parametrize("build", [tiny_vit, tiny_swin])
def test_glora_subnets_merge_into_the_plain_backbone(build):
    for seed in range(3):
        _, method, _ = _model("glora", build)
        arch = method.sample(method.positions(build()), random.Random(seed))
        model, method, _ = _model("glora", build, arch=arch)
        _perturb(model)
        model.eval()
        with torch.no_grad():
            expected = model(_x())
            merged = method.merge(model)
            assert (merged(_x()) - expected).abs().max().item() <= 1e-4
        assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in build().parameters())


def test_noah_prompt_block_swaps_the_previous_prompts_for_its_own():
    block = ElasticPromptBlock(torch.nn.Identity(), width=3, dim=4, init_width=3, dropout=0.0)  # out = block input
    x = torch.zeros(2, 5, 4)
    block.choice, block.strip = {"prompt": 2}, 1
    out = block(x)
    assert out.shape == (2, 6, 4)  # 5 - 1 (previous prompt) + 2 (own)
    torch.testing.assert_close(out[0, -2:], block.prompt[:2].detach())
    block.choice = {"prompt": 0}
    assert block(x).shape == (2, 5, 4)  # p = 0: the sequence passes unchanged


def test_noah_operators_keep_the_depth_structure_of_its_space():
    model, method, _ = _model("noah", tiny_vit)
    n, rng = method.positions(model), random.Random(0)
    for _ in range(30):
        a, b = method.sample(n, rng), method.sample(n, rng)
        for arch in (a, method.mutate(a, rng, 1.0, 1.0), method.crossover(a, b, rng)):
            for values in arch.values():
                depth = next((i for i, v in enumerate(values) if v == 0), n)
                assert all(v in (1, 2, 3) for v in values[:depth]) and not any(values[depth:])


def test_noah_published_subnets_counts():
    model = vit_b16()
    method = build_method("noah", {"arch": "largest"})
    attach_method(model, method)
    counts = [method.arch_params(model, arch) for arch in PUBLISHED_VTAB.values()]
    budget = [method.budget_params(model, arch) for arch in PUBLISHED_VTAB.values()]
    assert len(counts) == 19
    assert round(sum(counts) / 19) == 360_134  # what trains, mean over the released subnets (noah.py)
    assert round(sum(budget) / 19) == 442_512  # NOAH's own count (dead input prompt + its position embedding)
    assert method.arch_params(model, method.largest(12)) == 12 * (10 * 768 + 10 * 4 * 768 + 2 * 10 * 768 + 10 + 768)


def test_noah_published_needs_a_vtab_task():
    with pytest.raises(ConfigError, match="not for embedded/dsprites_loc"):
        attach_method(vit_b16(), build_method("noah", {"task": "dsprites_loc", "suite": "embedded"}))
    with pytest.raises(ConfigError, match="12-block"):
        attach_method(tiny_vit(), build_method("noah", {"task": "cifar", "suite": "vtab"}))


@pytest.mark.parametrize(
    ("arch", "needle"),
    [({"prompt": [1, 1, 1], "lora": [1, 1, 1]}, "exactly the slots"),
     ({"prompt": [1, 1], "lora": [1, 1], "adapter": [1, 1]}, "3 positions"),
     ({"prompt": [7, 1, 1], "lora": [1, 1, 1], "adapter": [1, 1, 1]}, "outside the search space"),
     ("nope", "neither one of")],
)
def test_bad_architectures_are_refused_with_the_reason(arch, needle):
    with pytest.raises(ConfigError, match=needle):
        _model("noah", tiny_vit, arch=arch)


def _evolution(method, model, state, generations, limit=1e12):
    n = method.positions(model)
    x, y = _x(5), torch.arange(4) % 5

    def score(arch):
        method.activate(model, arch)
        with torch.no_grad():
            return float((model(x).argmax(-1) == y).float().mean() * 100 + method.arch_params(model, arch) * 1e-6)

    cfg = EvolutionConfig(generations=generations, population=6, select=3, mutation=3, crossover=3,
                          param_limit=limit)
    return Evolution(cfg, lambda r: method.sample(n, r), lambda a, r: method.mutate(a, r, 0.5, 0.4),
                     lambda a, b, r: method.crossover(a, b, r), lambda a: method.budget_params(model, a),
                     lambda a: method.arch_params(model, a), score, limit, state, seed=0, log=lambda s: None)


@pytest.mark.parametrize("name", sorted(SEARCHED))
def test_evolution_respects_the_budget_and_resumes_to_the_same_result(name, tmp_path):
    model, method, _ = _model(name, tiny_vit)
    model.eval()
    largest = method.budget_params(model, method.largest(method.positions(model)))
    limit = 0.6 * largest
    full = _evolution(method, model, tmp_path / "a.json", 3, limit).run()
    assert full["generation"] == 3 and full["best"]["budget_params"] <= limit
    assert all(v["budget_params"] <= limit for v in full["seen"].values())
    assert full["evaluations"] == len(full["seen"]) >= 6
    best = max(full["seen"].values(), key=lambda v: (v["accuracy"], -v["order"]))
    assert arch_key(full["best"]["arch"]) == arch_key(best["arch"])

    _evolution(method, model, tmp_path / "b.json", 1, limit).run()  # interrupted after one generation
    resumed = _evolution(method, model, tmp_path / "b.json", 3, limit).run()
    assert resumed["best"] == full["best"] and sorted(resumed["seen"]) == sorted(full["seen"])


def test_evolution_explains_a_budget_nothing_fits(tmp_path):
    model, method, _ = _model("glora", tiny_vit)
    with pytest.raises(ConfigError, match="param_limit"):
        _evolution(method, model, tmp_path / "s.json", 1, limit=1).run()
