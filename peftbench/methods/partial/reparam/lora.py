"""LoRA: low-rank updates of the attention projections, merged into the weights after training.

Paper: Hu, Shen, Wallis, Allen-Zhu, Li, Wang, Wang, Chen (2021/ICLR 2022), "LoRA: Low-Rank Adaptation of
Large Language Models". Update of a frozen ``W``: ``W + s * B A`` with ``A`` (r x in) kaiming-uniform
(``a = sqrt(5)``, as the official ``loralib``), ``B`` (out x r) zero, so the model is unchanged at init.

Two registered forms, because the VTAB-1k tables and the paper disagree on the structure:

* ``lora`` (default = NOAH's "LoRA-8", the row NOAH, FacT and V-PETL Bench print): reference implementation
  ZhangYuanhan-AI/NOAH ``model/supernet_vision_transformer_timm.py`` (``Attention.LoRA_a/LoRA_b``) with
  ``experiments/LoRA/ViT-B_prompt_lora_8.yaml``: ONE rank-8 pair on the whole fused qkv output
  (768 -> 8 -> 2304), dropout 0.1 on the branch input (``--drop_rate_LoRA 0.1``), no alpha/r scaling.
  Count on ViT-B/16: 12 * (768*8 + 8*2304) = 294,912 = the 0.29M of NOAH (Zhang, Zhou & Liu 2022,
  "Neural Prompt Search", Table 1). V-PETL Bench's README table reprints the same numbers (72.25 mean,
  0.29M) although its code (``ImageClassification/models/vision_transformer_lora.py``) adapts W_q and W_v
  only: same count, different function; its code also zero-inits the v-branch's A (a bug, not reproduced).
  NOAH's recipe (``configs/LoRA/VTAB/slurm_train_lora_vtab.sh``): AdamW lr 1e-3, wd 1e-4, batch 64,
  100 epochs, no augmentation, no label smoothing.
* ``lora_qv`` (the LoRA paper's own form and V-PETL Bench's code): separate rank-8 pairs on the q and v
  slices of timm's fused qkv (k untouched), scaled by alpha / r with alpha = 8 (the paper sets alpha to
  the first r it tries and keeps it fixed, Section 4.1), no dropout. Same 294,912 parameters.

``targets`` chooses the structure for both names: ``qkv`` (the whole q|k|v output, one pair), ``q_v``,
``q_k_v`` (one pair per slot of qkv), ``q_k_v_o`` (plus the attention output projection), ``all_linear``
(whole qkv, proj, the MLP's input and output maps), ``mlp`` (the MLP's input and output maps only).

Backbones. The targets name logical maps (:func:`~peftbench.methods.layers.blocks.block_sites`), so they mean
the same outputs on every layout: Swin's ``attn.qkv`` is fused like ViT's; on EVA-02's separate
``q_proj`` / ``k_proj`` / ``v_proj`` the ``qkv`` target is still one pair, its A shared by the three
projections and its B split over their outputs (the fused count, the dropout mask drawn per projection),
and ``q_v`` is a pair on ``q_proj`` and one on ``v_proj``; SwiGLU's two input Linears (``fc1_g`` |
``fc1_x``) are the ``mlp_in`` map the same way. LayerScale, registers, rotary embeddings and the pooling
head do not touch the adapted Linears. ConvNeXt blocks have no attention: only ``targets: mlp`` (its
channels-last ``mlp.fc1`` / ``mlp.fc2``) is defined there, and the attention targets are refused.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import torch
from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import LinearSite, backbone_family, block_sites, replace_module
from peftbench.methods.layers.mergeable import (
    QKV_SLOTS,
    MergeableLinear,
    merge_linear_wrappers,
    scatter_slots,
)

# target preset -> ((logical site, adapted slots, or None = the whole output with one pair), ...)
_WHOLE = None
TARGETS: dict[str, tuple[tuple[str, tuple[int, ...] | None], ...]] = {
    "qkv": (("qkv", _WHOLE),),
    "q_v": (("qkv", (QKV_SLOTS["q"], QKV_SLOTS["v"])),),
    "q_k_v": (("qkv", (0, 1, 2)),),
    "q_k_v_o": (("qkv", (0, 1, 2)), ("proj", _WHOLE)),
    "all_linear": (("qkv", _WHOLE), ("proj", _WHOLE), ("mlp_in", _WHOLE), ("mlp_out", _WHOLE)),
    "mlp": (("mlp_in", _WHOLE), ("mlp_out", _WHOLE)),
}
ATTENTION_SITES = ("qkv", "proj")


@dataclasses.dataclass
class LoRAConfig(MethodConfig):
    """LoRA options; defaults reproduce NOAH's LoRA-8 on ViT-B/16 (0.29M).

    Attributes:
        rank: r, the inner dimension of each pair.
        alpha: scaling numerator, update = alpha / r * B A; None = no scaling (NOAH, V-PETL).
        targets: which layers / slots get a pair (see :data:`TARGETS`).
        dropout: dropout on the branch input (training only).
    """

    rank: int = 8
    alpha: float | None = None
    targets: str = "qkv"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"lora rank must be an integer >= 1, got {self.rank!r}; e.g. method.rank=8")
        if self.alpha is not None and not self.alpha > 0:
            raise ConfigError(f"lora alpha must be > 0 or null (no scaling), got {self.alpha!r}")
        if self.targets not in TARGETS:
            raise ConfigError(
                f"lora targets {self.targets!r} is not one of {', '.join(sorted(TARGETS))}; "
                "e.g. method.targets=q_v for the paper's W_q/W_v form"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def scaling(self) -> float:
        """The factor on B A: alpha / r, or 1 when alpha is None."""
        return 1.0 if self.alpha is None else self.alpha / self.rank


@dataclasses.dataclass
class LoRAQVConfig(LoRAConfig):
    """The LoRA paper's form: W_q and W_v, alpha / r scaling with alpha = r = 8, no dropout."""

    alpha: float | None = 8.0
    targets: str = "q_v"
    dropout: float = 0.0


class LoRALinear(MergeableLinear):
    """``y = base(x) + s * [B_p A_p dropout(x)]`` written into the adapted output slots ``p``.

    ``lora_A`` holds one ``(r, in)`` matrix per adapted slot, ``lora_B`` one ``(W, r)`` matrix, where the
    output of ``base_layer`` is ``num_slots`` slots of width ``W`` (timm's qkv: 3 slots q, k, v). With an
    ``owner`` (another part of the same logical map), ``lora_A`` is the owner's.
    """

    LINEAR_WEIGHTS = ("lora_A", "lora_B")  # the weights of the down and up Linear maps (method_init=noah)

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int,
        scaling: float,
        dropout: float = 0.0,
        num_slots: int = 1,
        slots: tuple[int, ...] | None = None,
        owner: LoRALinear | None = None,
    ) -> None:
        super().__init__(base_layer, owner)
        if base_layer.out_features % num_slots:
            raise ConfigError(f"{base_layer} output cannot be split into {num_slots} slots")
        self.num_slots = num_slots
        self.slots = tuple(range(num_slots)) if slots is None else tuple(slots)
        self.scaling = scaling
        width = base_layer.out_features // num_slots
        w = base_layer.weight
        if owner is None:
            self.lora_A = nn.Parameter(
                torch.empty(len(self.slots), rank, base_layer.in_features, dtype=w.dtype, device=w.device)
            )
            for a in self.lora_A.data:  # per slot, so fan_in = in_features as for one nn.Linear(in, r)
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(len(self.slots), width, rank, dtype=w.dtype, device=w.device))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (..., out)
        h = torch.einsum("...i,pri->...pr", self.dropout(x), self.owner.lora_A)  # (..., P, r)
        delta = torch.einsum("...pr,pwr->...pw", h, self.lora_B) * self.scaling  # (..., P, W)
        return out + scatter_slots(delta, self.slots, self.num_slots)

    def delta_weight(self) -> torch.Tensor:
        per_slot = torch.einsum("pwr,pri->pwi", self.lora_B, self.owner.lora_A) * self.scaling  # (P, W, in)
        full = per_slot.new_zeros(self.num_slots, *per_slot.shape[1:])  # (S, W, in)
        index = torch.tensor(self.slots, device=per_slot.device)
        return full.index_copy(0, index, per_slot).reshape(self.out_features, self.in_features)

    def as_one_pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The same update as ONE rank-``P*r`` pair on the whole fused output: ``A`` stacks the slots' ``A_p``
        ``(P*r, in)``; ``B`` ``(out, P*r)`` puts ``B_p`` in slot ``p``'s rows and columns ``p*r:(p+1)*r``, zeros
        elsewhere, so ``B A`` is :meth:`delta_weight` / scaling and the branch computes the same sums."""
        slots, rank, width = len(self.slots), self.lora_A.shape[1], self.lora_B.shape[1]
        a = self.owner.lora_A.detach().reshape(slots * rank, self.in_features)
        b = self.lora_B.new_zeros(self.out_features, slots * rank)
        for j, slot in enumerate(self.slots):
            b[slot * width : (slot + 1) * width, j * rank : (j + 1) * rank] = self.lora_B.detach()[j]
        return a, b


def wrap_site(site: LinearSite, slots: tuple[int, ...] | None, cfg: LoRAConfig) -> list[tuple[str, LoRALinear]]:
    """LoRA wrappers for one logical map: one pair on its whole output (``slots`` None) or one per slot.

    Returns:
        ``(qualified_name, wrapper)`` for every part that gets one.
    """
    out: list[tuple[str, LoRALinear]] = []
    if slots is None:  # one pair on the concatenated output: the first part owns A, every part has its B rows
        owner: LoRALinear | None = None
        for part in site.parts:
            wrapper = LoRALinear(part.layer, cfg.rank, cfg.scaling, cfg.dropout, owner=owner)
            owner = owner or wrapper
            out.append((part.name, wrapper))
        return out
    for part in site.parts:
        local = tuple(i for i, s in enumerate(part.slots) if s in slots)  # adapted slots of this Linear
        if local:
            out.append((part.name, LoRALinear(part.layer, cfg.rank, cfg.scaling, cfg.dropout, len(part.slots), local)))
    return out


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> nn.Module:
    """Wrap the maps chosen by ``cfg.targets`` in every block with :class:`LoRALinear`.

    Args:
        model: timm ViT, Eva, Swin (any target) or ConvNeXt (``targets: mlp``).
        cfg: the LoRA options.

    Returns:
        The same model, adapted in place.
    """
    targets = TARGETS[cfg.targets]
    if backbone_family(model) == "convnext" and any(site in ATTENTION_SITES for site, _ in targets):
        raise MethodNotSupportedError(
            f"lora targets={cfg.targets!r} adapts attention, which ConvNeXt blocks do not have; set "
            "method.targets=mlp (LoRA on every block's mlp.fc1 and mlp.fc2)"
        )
    for site_name, slots in targets:
        for site in block_sites(model, site_name):
            for name, wrapper in wrap_site(site, slots, cfg):
                replace_module(model, name, wrapper)
    return model


class LoRA(PeftMethod[LoRAConfig]):
    """LoRA as in NOAH's VTAB-1k table: rank 8 on the whole fused qkv, no scaling, dropout 0.1."""

    name = "lora"
    family = "partial"
    subfamily = "reparameter"
    config_cls = LoRAConfig
    mergeable = True
    backbones = ("vit", "eva", "swin", "convnext")
    notes = {
        "qkv_separate": "qkv: one pair, A shared by q/k/v_proj and B split over them (the fused count)",
        "swiglu": "mlp_in (all_linear, mlp): one pair shared by fc1_g and fc1_x",
        "convnext": "only targets=mlp (fc1, fc2 of every block)",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_lora(model, self.config)

    def merge(self, model: nn.Module) -> nn.Module:
        return merge_linear_wrappers(model)

    def peft_adapter(self, model: nn.Module, plain: nn.Module) -> tuple[Any, dict[str, torch.Tensor]]:
        """PEFT's LoRA on the same Linears: each wrapper as one pair of rank ``P*r`` (:meth:`LoRALinear.as_one_pair`;
        q and v of the fused qkv: rank 2r with block-placed B) and ``lora_alpha = scaling * P*r``, so PEFT's
        ``lora_alpha / r`` is this method's scaling; per-layer ranks differ only between target paths
        (``rank_pattern`` / ``alpha_pattern`` keyed by the module's name)."""
        from peftbench.methods.partial.hf_peft.bridge import import_peft

        peft = import_peft(self.name)
        wrappers = {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}
        # a whole-output pair has rank r; a slotted wrapper becomes one pair of rank (adapted slots) x r
        ranks = {name: len(w.slots) * self.config.rank for name, w in wrappers.items()}
        base_rank = min(ranks.values())
        config = peft.LoraConfig(
            r=base_rank,
            lora_alpha=self.config.scaling * base_rank,
            target_modules=sorted(wrappers),
            lora_dropout=self.config.dropout,
            rank_pattern={re.escape(rel): r for rel, r in ranks.items() if r != base_rank},
            alpha_pattern={re.escape(rel): self.config.scaling * r for rel, r in ranks.items() if r != base_rank},
        )
        tensors: dict[str, torch.Tensor] = {}
        for name, wrapper in wrappers.items():
            a, b = wrapper.as_one_pair()
            tensors[f"{name}.lora_A.default.weight"] = a
            tensors[f"{name}.lora_B.default.weight"] = b
        return config, tensors


class LoRAQV(LoRA):
    """The LoRA paper's form on timm's fused qkv: W_q and W_v slices, alpha / r scaling."""

    name = "lora_qv"
    config_cls = LoRAQVConfig
    notes = {
        "qkv_separate": "q_v: one pair on q_proj and one on v_proj (the fused slots' count)",
        "convnext": "only targets=mlp (fc1, fc2 of every block)",
    }
