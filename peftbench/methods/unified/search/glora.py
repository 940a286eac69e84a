"""GLoRA: generalized LoRA, a searched per-layer mix of weight, bias and prompt updates of every Linear.

Paper: Chavan, Liu, Gupta, Xing, Shen (2023, arXiv 2306.07967), "One-for-All: Generalized LoRA for
Parameter-Efficient Fine-tuning". Reference implementation followed: Arnav0400/ViT-Slim ``GLoRA/layer.py``
(``SuperScalableLinear``), ``GLoRA/utils.py`` (``set_glora``), ``GLoRA/supernet.py``, ``GLoRA/evolution.py``
and ``GLoRA/evolution_utils.py``. Every ``nn.Linear`` of the transformer blocks (ViT-B/16: qkv, proj, fc1, fc2
in 12 blocks = 48 layers, GLoRA's ``depth = 48``) computes, with frozen ``W0, b0``::

    y = (W0 + W0 * A + B) x + (b0 + b0 * D + E + W0 C)

(``*`` elementwise, broadcast). Each support takes one choice per layer: A, B in {LoRA_r, vector, constant,
none}; C in {LoRA_r, vector, none}; D, E in {constant, none, vector}. LoRA_r of A/B is ``A_down (out, r) @ A_up
(r, in)``, vector the column ``A_down[:, :1]`` (out, 1), constant ``A_down[0, 0]``; C is ``C_down (in, r) @
C_up (r, 1)`` or ``C_down[:, :1]``; D, E are ``(out,)`` vectors or their first entry. Init as the reference:
the ``*_down`` factors and D, E zero (the model starts as the backbone), ``*_up`` xavier-uniform. Everything
folds back into ``W0, b0`` (:meth:`GLoRA.merge`): no inference cost.

Search: the supernet draws every layer's five choices uniformly at each forward (``random.choice`` over the
432 combinations = independent uniform choices); 500 epochs on train800, AdamW lr 1e-4, wd 1e-4, cosine with
10 warmup epochs from 1e-6 to a floor of 1e-5, batch 64, drop-path 0.1; evolution on val200 (the repository's
default split), 20 generations, population 50, top 10, 25 mutations (each support re-drawn with m_prob 0.2)
and 25 crossovers (each support from either parent), limit 1.00M (``--param-limits`` default), rank 4. The
official code stops after the search and evaluates the subnet with its supernet weights; the pipeline's
``final`` stage retrains it on train800val200 starting from those weights (``configs/search/glora.yaml``:
``final.init: supernet``), a stated deviation. The limit is checked against GLoRA's own count
(``EvolutionSearcher.get_param``), which equals the trainable count of the fixed subnet built here.

``arch: largest`` (the default) is every support at its largest choice (A, B, C LoRA-4, D, E vectors):
1,603,776 parameters on ViT-B/16 without head; the paper's searched per-task architectures are not released,
so no published count is reproduced (GLoRA's tables report averages of searched subnets under budgets).
Deviation: GLoRA wraps every Linear except the head; here the Linears of the transformer blocks (the same 48
on a ViT; on Swin the bias-free patch-merging reductions stay plain, since a bias update could not merge).
On Eva every Linear of the blocks is a position too (EVA-02: q, k, v, proj, SwiGLU's two inputs and fc2, 7 per
block; DINOv3: 4), found by :func:`~peftbench.methods.layers.blocks.all_block_linears`. Where a block Linear has
no bias (EVA-02's k_proj, DINOv3's qkv) D, which scales the bias, has nothing to scale and is not allocated
(its choice counts 0); C and E still train, but merging is refused there: the merged layer would need a bias
it does not have.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.layers.blocks import all_block_linears, replace_module
from peftbench.methods.layers.mergeable import MergeableLinear, merge_linear_wrappers
from peftbench.methods.unified.search.space import Arch, ElasticModule, SearchedConfig, SearchedMethod

# slot -> choices, smallest first (the last one is what "largest" and the supernet allocate)
CHOICES: dict[str, tuple[str, ...]] = {
    "A": ("none", "constant", "vector", "lora"),
    "B": ("none", "constant", "vector", "lora"),
    "C": ("none", "vector", "lora"),
    "D": ("none", "constant", "vector"),
    "E": ("none", "constant", "vector"),
}


@dataclasses.dataclass
class GLoRAConfig(SearchedConfig):
    """GLoRA options; defaults are the reference repository's (rank 4).

    Attributes:
        rank: r of the LoRA choices of A, B and C.
    """

    arch: Any = "largest"
    rank: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"glora rank must be an integer >= 1, got {self.rank!r}; e.g. method.rank=4")
        super().__post_init__()


def _xavier(rows: int, cols: int) -> nn.Parameter:
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, cols)))


class GLoRALinear(MergeableLinear, ElasticModule):
    """A frozen Linear with GLoRA's supports A-E, allocated for ``alloc`` and run with ``choice``."""

    slots = tuple(CHOICES)

    def __init__(self, base_layer: nn.Linear, alloc: Mapping[str, str], rank: int) -> None:
        MergeableLinear.__init__(self, base_layer)
        out_f, in_f = base_layer.out_features, base_layer.in_features
        self.rank = rank
        widths = {"lora": rank, "vector": 1, "constant": 1}
        for key in ("A", "B"):
            if alloc[key] != "none":
                rows = 1 if alloc[key] == "constant" else out_f
                self.register_parameter(f"{key}_down", nn.Parameter(torch.zeros(rows, widths[alloc[key]])))
                if alloc[key] == "lora":
                    self.register_parameter(f"{key}_up", _xavier(rank, in_f))  # (r, in)
        if alloc["C"] != "none":
            self.C_down = nn.Parameter(torch.zeros(in_f, widths[alloc["C"]]))  # (in, r) or (in, 1)
            if alloc["C"] == "lora":
                self.C_up = _xavier(rank, 1)  # (r, 1)
        for key in ("D", "E"):
            if alloc[key] != "none" and (key == "E" or base_layer.bias is not None):  # D scales b0: none, no D
                self.register_parameter(key, nn.Parameter(torch.zeros(1 if alloc[key] == "constant" else out_f)))
        self.choice = dict(alloc)

    def param_count(self, choice: Mapping[str, str]) -> int:
        out_f, in_f, r = self.out_features, self.in_features, self.rank
        sizes = {
            "A": {"lora": r * (out_f + in_f), "vector": out_f, "constant": 1},
            "B": {"lora": r * (out_f + in_f), "vector": out_f, "constant": 1},
            "C": {"lora": in_f * r + r, "vector": in_f},
            "D": {"vector": out_f, "constant": 1} if self.base_layer.bias is not None else {},
            "E": {"vector": out_f, "constant": 1},
        }
        return sum(sizes[k].get(v, 0) for k, v in choice.items())

    def _weight_support(self, key: str) -> torch.Tensor | None:
        """A or B as a tensor broadcastable to ``(out, in)``, or None for ``none``."""
        c = self.choice[key]
        down = getattr(self, f"{key}_down", None)
        if c == "lora":
            return down[:, : self.rank] @ getattr(self, f"{key}_up")[: self.rank]  # (out, in)
        if c == "vector":
            return down[:, :1]  # (out, 1)
        if c == "constant":
            return down[:1, :1]  # (1, 1)
        return None

    def delta_weight(self) -> torch.Tensor:
        w = self.base_layer.weight
        delta = torch.zeros_like(w)
        a, b = self._weight_support("A"), self._weight_support("B")
        if a is not None:
            delta = delta + w * a
        if b is not None:
            delta = delta + b
        return delta

    def delta_bias(self) -> torch.Tensor | None:
        w, b0 = self.base_layer.weight, self.base_layer.bias
        c, d, e = self.choice["C"], self.choice["D"], self.choice["E"]
        if c == d == e == "none":
            return None
        delta = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        if c != "none":
            support = self.C_down[:, : self.rank] @ self.C_up[: self.rank] if c == "lora" else self.C_down[:, :1]
            delta = delta + (w @ support).squeeze(-1)  # (out,)
        if d != "none" and b0 is not None:
            delta = delta + b0 * (self.D if d == "vector" else self.D[:1])
        if e != "none":
            delta = delta + (self.E if e == "vector" else self.E[:1])
        return delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        db = self.delta_bias()
        bias = base.bias if db is None else (db if base.bias is None else base.bias + db)
        return F.linear(x, base.weight + self.delta_weight(), bias)


class GLoRA(SearchedMethod[GLoRAConfig]):
    """GLoRA (Chavan et al., 2023): per-Linear searched supports A-E; merges into the backbone."""

    name = "glora"
    config_cls = GLoRAConfig
    mergeable = True
    backbones = ("vit", "eva", "swin")
    refusals = {
        "convnext": "its search space is over the Linears of transformer blocks (qkv, proj, fc1, fc2); GLoRA does "
        "not define it for convolutional stages"
    }
    notes = {
        "qkv_separate": "every block Linear is a position (7 per EVA-02 block)",
        "bias_free_linear": "no D on bias-free Linears; merge refused there (C, E add a bias)",
    }
    slots = tuple(CHOICES)

    def positions(self, model: nn.Module) -> int:
        injected = sum(1 for m in model.modules() if isinstance(m, GLoRALinear))  # a model GLoRA already wraps
        return injected or len(all_block_linears(model))

    def choices(self, slot: str) -> tuple[str, ...]:
        return CHOICES[slot]

    def inject(self, model: nn.Module, alloc: Arch) -> None:
        for i, (name, layer) in enumerate(all_block_linears(model)):  # block order, then qkv, proj, fc1, fc2
            choice = {k: alloc[k][i] for k in CHOICES}
            replace_module(model, name, GLoRALinear(layer, choice, self.config.rank))

    def merge(self, model: nn.Module) -> nn.Module:
        return merge_linear_wrappers(model)

    def sample(self, n: int, rng: random.Random) -> Arch:
        return {k: [rng.choice(v) for _ in range(n)] for k, v in CHOICES.items()}

    def mutate(self, arch: Arch, rng: random.Random, m_prob: float, s_prob: float) -> Arch:
        # per layer and support: re-drawn with probability m_prob (s_prob is NOAH's; GLoRA has none)
        return {
            k: [rng.choice(CHOICES[k]) if rng.random() < m_prob else v for v in arch[k]] for k in CHOICES
        }

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        return {k: [rng.choice([x, y]) for x, y in zip(a[k], b[k], strict=True)] for k in CHOICES}
