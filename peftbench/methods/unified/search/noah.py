"""NOAH: Neural prOmpt seArcH over VPT, LoRA and adapters, one choice per block and module.

Paper: Zhang, Zhou, Liu (2022, arXiv 2206.04673), "Neural Prompt Search". Reference implementation followed:
ZhangYuanhan-AI/NOAH (``model/supernet_vision_transformer_timm.py``, ``model/module/adapter_super.py``,
``supernet_engine_prompt.py``, ``evolution.py``, ``experiments/NOAH/supernet/supernet-B_prompt_VTAB.yaml``,
``configs/NOAH/VTAB/{supernet,search,subnet}/*.sh``). Per block ``i`` three elastic modules:

* ``prompt`` p_i: VPT-deep tokens **appended at the end** of the sequence; when p_i > 0 the block first drops
  the last p_{i-1} tokens (the previous block's prompts) and appends its own, when p_i = 0 the sequence passes
  unchanged. Dropout 0.1 on the expanded tokens. Init xavier-uniform of NOAH's allocation (1, 100, D).
  NOAH's model-level prompt (with its own position embedding) is replaced by block 0's prompts before any
  block reads it, so it is not built here (see the count note below);
* ``lora`` r_i on the whole fused qkv (D -> r -> 3D, no bias, no scaling), dropout 0.1 on the branch input,
  A kaiming-uniform (a = sqrt 5), B zero;
* ``adapter`` a_i on the MLP output, before the residual add: ``h + up(dropout(QuickGELU(down(h))))``,
  D -> a -> D with biases, weights xavier-uniform of NOAH's allocation (100 x D), biases N(0, 1e-6),
  dropout 0.1. The adapter wraps timm's ``mlp``, so the block's drop-path acts on MLP + adapter together; NOAH
  applies it to the MLP output before its adapter (a difference only while drop-path is on, in training).

Search space (the VTAB one, ``supernet-B_prompt_VTAB.yaml``): each module type draws a depth d from
{3, 6, 9, 12} and a value from {1, 5, 10} for each of the first d blocks, 0 after them (on backbones with fewer
blocks the depths are capped at the block count). Supernet: 500 epochs on train800, lr 5e-4, wd 1e-4, batch
64, drop-path 0.1, one architecture per step; search: evolution on val200, 15 generations (the VTAB script; 20 in
``evolution.py``), population 50, top 10, 25 mutations (m_prob 0.2, depth-resample s_prob 0.4) and 25
crossovers, limit 0.64M; retrain: 100 epochs on train800val200, lr 1e-3, wd 1e-4
(``configs/search/noah.yaml``). NOAH's mutation only changes depths (new blocks get random values);
its crossover takes each module type's whole list from one parent. Both are reproduced.

``arch: published`` (the default) is NOAH's released subnet for the VTAB-1k task (``noah_published.py``).
Parameter counts, ViT-B/16 without head: the harness counts what trains, per block
``p D + r (D + 3D) + [a > 0] (2 a D + a + D)``: 320,330 for CIFAR-100, a mean of 360,134 over the 19 released
subnets. NOAH's search counts (``get_sampled_params_numel``) also add p_0 D + 100 D for the dead model-level
prompt and its position embedding: 442,512 on average; NOAH's Table 1 (and V-PETL Bench) print 0.43M. The
search here checks the limit against NOAH's count (:meth:`NOAH.budget_params`), so the 0.64M budget means what
it meant there. NOAH's adapter width for LoRA-only or adapter-only rows is not used here (``lora``,
``adapter`` are their own methods).

Other backbones: the prompts' outputs are dropped after the last block, so any head pools as without them
(SigLIP's attention pool, EVA-02's average; NOAH's own ViT reads the class token, where nothing changes); on
Eva (DINOv3) the appended prompts get no rotary position (:mod:`peftbench.methods.layers.tokens`); on
LayerScale backbones the adapter sits inside the layer scale (:mod:`peftbench.methods.layers.bottleneck`).
EVA-02's separate q/k/v projections are refused (the elastic LoRA is written for a fused qkv).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.layers.blocks import block_sites, replace_module, transformer_blocks
from peftbench.methods.layers.mergeable import MergeableLinear
from peftbench.methods.layers.tokens import prepare_extra_tokens
from peftbench.methods.unified.search.noah_published import PUBLISHED_VTAB
from peftbench.methods.unified.search.space import Arch, ElasticModule, SearchedConfig, SearchedMethod

SLOTS = ("prompt", "lora", "adapter")


@dataclasses.dataclass
class NOAHConfig(SearchedConfig):
    """NOAH's VTAB search space and module settings (see the module docstring for sources).

    Attributes:
        values: the non-zero values a position may take (same for the three module types).
        depths: how many leading blocks a module type occupies in a sampled architecture.
        init_width: NOAH's allocation width (100), which sets the xavier bounds of prompts and adapters.
        dropout: dropout of the prompt tokens, the LoRA input and the adapter bottleneck.
    """

    arch: Any = "published"
    values: list[int] = dataclasses.field(default_factory=lambda: [1, 5, 10])
    depths: list[int] = dataclasses.field(default_factory=lambda: [3, 6, 9, 12])
    init_width: int = 100
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for key in ("values", "depths"):
            vals = list(getattr(self, key))
            if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
                raise ConfigError(f"noah {key} must be a non-empty list of integers >= 1, got {vals!r}")
            setattr(self, key, sorted(set(vals)))
        if not isinstance(self.init_width, int) or self.init_width < max(self.values):
            raise ConfigError(f"noah init_width must be an integer >= max(values), got {self.init_width!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"noah dropout must be in [0, 1), got {self.dropout!r}")
        super().__post_init__()


class ElasticPromptBlock(ElasticModule):
    """A block that swaps the trailing prompt tokens for its own ``choice`` tokens, then runs ``base_layer``."""

    slots = ("prompt",)

    def __init__(self, base_layer: nn.Module, width: int, dim: int, init_width: int, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.strip = 0  # prompt tokens the previous block appended (NOAH drops p_{i-1})
        self.dim = dim
        if width:
            bound = math.sqrt(6.0 / (init_width * dim + dim))  # xavier of a (1, init_width, D) tensor
            self.prompt = nn.Parameter(torch.empty(width, dim).uniform_(-bound, bound))  # (p_max, D)
        self.dropout = nn.Dropout(dropout)

    def param_count(self, choice: Mapping[str, int]) -> int:
        return choice["prompt"] * self.dim

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        p = self.active()
        if p:
            if self.strip:
                x = x[:, : -self.strip]
            prompts = self.dropout(self.prompt[:p].expand(x.shape[0], -1, -1))  # (B, p, D)
            x = torch.cat((x, prompts), dim=1)  # (B, N + p, D)
        return self.base_layer(x, *args, **kwargs)


class ElasticLoRA(MergeableLinear, ElasticModule):
    """``qkv(x) + B[:, :r] A[:r] dropout(x)`` on the fused qkv, r = ``choice`` (0: the plain layer)."""

    slots = ("lora",)

    def __init__(self, base_layer: nn.Linear, width: int, dropout: float) -> None:
        MergeableLinear.__init__(self, base_layer)
        self.choice = {"lora": width}
        if width:
            self.lora_A = nn.Parameter(torch.empty(width, base_layer.in_features))  # (r_max, D)
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            self.lora_B = nn.Parameter(torch.zeros(base_layer.out_features, width))  # (3D, r_max)
        self.dropout = nn.Dropout(dropout)

    def param_count(self, choice: Mapping[str, int]) -> int:
        return choice["lora"] * (self.in_features + self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        r = self.active()
        if r:
            y = y + F.linear(F.linear(self.dropout(x), self.lora_A[:r]), self.lora_B[:, :r])
        return y

    def delta_weight(self) -> torch.Tensor:
        r = self.active()
        if not r:
            return torch.zeros_like(self.base_layer.weight)
        return self.lora_B[:, :r] @ self.lora_A[:r]


class ElasticAdapter(ElasticModule):
    """``h + up(dropout(QuickGELU(down(h))))`` with ``h = base_layer(x)`` (the MLP), width ``choice``."""

    slots = ("adapter",)

    def __init__(self, base_layer: nn.Module, width: int, dim: int, init_width: int, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        if width:
            bound = math.sqrt(6.0 / (dim + init_width))  # xavier of NOAH's (init_width, D) allocation
            self.down_weight = nn.Parameter(torch.empty(width, dim).uniform_(-bound, bound))  # (a_max, D)
            self.down_bias = nn.Parameter(torch.empty(width).normal_(std=1e-6))
            self.up_weight = nn.Parameter(torch.empty(dim, width).uniform_(-bound, bound))  # (D, a_max)
            self.up_bias = nn.Parameter(torch.empty(dim).normal_(std=1e-6))
        self.dropout = nn.Dropout(dropout)
        self.dim = dim

    def param_count(self, choice: Mapping[str, int]) -> int:
        a = choice["adapter"]
        return 2 * a * self.dim + a + self.dim if a else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)
        a = self.active()
        if not a:
            return h
        z = F.linear(h, self.down_weight[:a], self.down_bias[:a])
        z = self.dropout(z * torch.sigmoid(1.702 * z))  # QuickGELU, as NOAH's AdapterSuper
        return h + F.linear(z, self.up_weight[:, :a], self.up_bias)


class NOAH(SearchedMethod[NOAHConfig]):
    """NOAH (Zhang et al., 2022): per-block VPT length, LoRA rank and adapter width, found by search."""

    name = "noah"
    config_cls = NOAHConfig
    backbones = ("vit", "eva")
    refusals = {
        "swin": "NOAH's search space (a prompt length, LoRA rank and adapter width per block of one token "
        "sequence) is defined on a plain ViT, not on Swin's windowed stages",
        "convnext": "NOAH searches VPT prompts, LoRA on qkv and adapters of transformer blocks; a ConvNeXt has "
        "none of them",
    }
    notes = {
        "map_head": "prompt outputs dropped before the attention pool",
        "rope": "appended prompts get no rotary position",
        "layerscale": "adapter inside the layer scale",
    }
    slots = SLOTS

    def positions(self, model: nn.Module) -> int:
        return len(transformer_blocks(model))

    def choices(self, slot: str) -> tuple[int, ...]:
        return (0, *self.config.values)

    def _depths(self, n: int) -> list[int]:
        return sorted({min(d, n) for d in self.config.depths})

    def published_arch(self, task: str | None, suite: str | None, n: int) -> Arch:
        if suite not in (None, "vtab") or task not in PUBLISHED_VTAB:
            where = f"{suite}/{task}" if suite else repr(task)
            raise ConfigError(
                f"method.arch=published: NOAH released subnets for the VTAB-1k tasks {', '.join(sorted(PUBLISHED_VTAB))}, "
                f"not for {where}. Search one with `peftbench-search method=noah dataset=...`, or set method.arch "
                "to an architecture file, a mapping or `largest`"
            )
        arch = {k: list(v) for k, v in PUBLISHED_VTAB[task].items()}
        if n != len(arch["prompt"]):
            raise ConfigError(
                f"method.arch=published: NOAH's subnets are for 12-block ViT-B/16, this backbone has {n} blocks"
            )
        return arch

    def inject(self, model: nn.Module, alloc: Arch) -> None:
        cfg: NOAHConfig = self.config
        dim = model.embed_dim
        qkv = block_sites(model, "qkv", transformer_blocks(model))
        if not all(site.fused for site in qkv):
            raise MethodNotSupportedError(
                "method 'noah': its elastic LoRA is one rank-r pair on a fused qkv Linear (rank slices of one "
                "allocation); this backbone computes q, k, v with separate projections (EVA-02), for which the "
                "elastic form is not implemented. Use a backbone with a fused qkv (ViT, DINOv2/v3, CLIP, SigLIP)"
            )
        for i, (_, block) in enumerate(transformer_blocks(model)):
            part = qkv[i].parts[0]
            replace_module(model, part.name, ElasticLoRA(part.layer, alloc["lora"][i], cfg.dropout))
            block.mlp = ElasticAdapter(block.mlp, alloc["adapter"][i], dim, cfg.init_width, cfg.dropout)
        prepare_extra_tokens(model, "end")  # prompts: no rotary position, dropped before the head's pooling
        for i, (name, block) in enumerate(transformer_blocks(model)):
            replace_module(model, name, ElasticPromptBlock(block, alloc["prompt"][i], dim, cfg.init_width, cfg.dropout))

    def after_activate(self, model: nn.Module, arch: Arch) -> None:
        for i, module in enumerate(self.elastic_modules(model)["prompt"]):
            module.strip = arch["prompt"][i - 1] if i else 0

    def budget_params(self, model: nn.Module, arch: Arch) -> int:
        """NOAH's ``get_sampled_params_numel``: the trainable count plus the dead model-level prompt (p_0 D)
        and its position embedding (init_width x D) whenever p_0 > 0."""
        dim = model.embed_dim
        extra = (arch["prompt"][0] + self.config.init_width) * dim if arch["prompt"][0] else 0
        return self.arch_params(model, arch) + extra

    def sample(self, n: int, rng: random.Random) -> Arch:
        values, depths = self.config.values, self._depths(n)
        arch = {}
        for slot in SLOTS:
            d = rng.choice(depths)
            arch[slot] = [rng.choice(values) for _ in range(d)] + [0] * (n - d)
        return arch

    def mutate(self, arch: Arch, rng: random.Random, m_prob: float, s_prob: float) -> Arch:
        values, depths = self.config.values, self._depths(len(arch["prompt"]))
        out = {}
        for slot in SLOTS:
            cur = list(arch[slot])
            if rng.random() < m_prob:
                depth = next((i for i, v in enumerate(cur) if v == 0), len(cur))
                new = rng.choice(depths) if rng.random() < s_prob else depth
                if new > depth:
                    cur = cur[:depth] + [rng.choice(values) for _ in range(new - depth)] + [0] * (len(cur) - new)
                else:
                    cur = cur[:new] + [0] * (len(cur) - new)
            out[slot] = cur
        return out

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        return {slot: list(rng.choice([a[slot], b[slot]])) for slot in SLOTS}
