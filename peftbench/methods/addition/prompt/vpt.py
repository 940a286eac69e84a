"""VPT: learned prompt tokens inserted after the class token, at the input (shallow) or at every layer (deep).

Paper: Jia, Tang, Chen, Cardie, Belongie, Hariharan, Lim (ECCV 2022), "Visual Prompt Tuning".
Reference implementation followed: KMnP/vpt ``src/models/vit_prompt/vit.py`` (``PromptedTransformer``):

* ``p`` prompt vectors of width D are inserted right after the CLS token, before the patch tokens;
  the classifier still reads the CLS token (``x[:, 0]``);
* shallow: one set at the input of the first block; deep: a fresh set for every block, replacing the
  previous block's outputs at the prompt positions (``deep_prompt_embeddings`` for blocks 1..L-1 plus the
  input set: L * p * D parameters in all);
* init: uniform in +-sqrt(6 / (3 * ph * pw + D)) (Xavier-uniform of a patch projection, ph x pw the patch
  size read from the model: 16 x 16 on ViT-B/16);
* dropout on the prompts: 0.1 in the paper's deep runs; the official demo notebook says "we don't use
  dropout for VPT-shallow" (V-PETL Bench's shallow code has none either), so ``vpt_shallow`` defaults to 0.

Prompt length. VPT tunes p per task in {1, 5, 10, 50, 100, 200}; its per-task values are in the authors'
released hyper-parameter sheet (linked from the KMnP/vpt README, not in the repository). The VPT-deep
per-task lengths (a public copy of that sheet, agreeing with ``demo.ipynb``) are in the paper recipe
``configs/experiment/vpt/vpt_deep.yaml``, resolved per task like any per-task value.

Defaults and parameter counts (ViT-B/16, head excluded):

* ``vpt_shallow``: p = 100, V-PETL Bench's VPT-shallow setting (``scripts/run_vit_vptshallow.sh``,
  ``topN=100``): 100 * 768 = 76,800, the "0.08M" of V-PETL Bench's VTAB-1k table.
* ``vpt_deep``: p = 50, the official demo's example length: 12 * 50 * 768 = 460,800. No published VTAB-1k
  count is one model's: tables print the mean over tasks of per-task p (V-PETL Bench "0.56M"); the mean
  with the recipe's VTAB-1k lengths is 12 * 768 * 73.6 = 0.68M, so that 0.56M is not reproducible from the
  lengths found. ``experiment=vpt/vpt_deep`` runs the paper's per-task lengths.

Structure (wrap, never patch): ``model.norm_pre`` (runs right after the position embedding) is wrapped by
:class:`PromptInserter`; for deep, blocks 1..L-1 are wrapped by :class:`DeepPromptBlock`. Prompts go after
all prefix tokens (``num_prefix_tokens``: the class token and DINOv2's / DINOv3's registers; none on SigLIP)
and bypass ``norm_pre``: they are learned in the input space of the first block, VPT's ``[x_0, P, E_0]``
(CLIP's ``ln_pre`` normalises the patch embeddings only; PETL_Vision's VPT also inserts after ``norm_pre``,
MaPLe's CLIP prompts pass through it). Heads: after the last block the prompt outputs are dropped
(:class:`~peftbench.methods.layers.tokens.ExtraTokenRemover` on the final ``norm``), so the head pools what it
pools without prompts: the class token (VPT's own rule), EVA-02's patch average, SigLIP's attention pool over
the patch tokens. Rotary position embeddings (EVA-02, DINOv3): prompts get **no rotary position**, as the
class and register tokens (:class:`~peftbench.methods.layers.tokens.RotaryFreeTokens` pads the rotary table
with identity rotations), and keep only their learned value, as on a ViT with absolute positions, where
VPT's prompts get no position embedding either. LayerScale does not touch the prompts.
Deliberate deviation: none in the forward pass; VPT on Swin is a different variant (prompts per window
and stage, ``vit_prompt/swin_transformer.py``) and is not implemented here: Swin raises.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import replace_module, transformer_blocks
from peftbench.methods.layers.tokens import like_tensor, prepare_extra_tokens


@dataclasses.dataclass
class VPTConfig(MethodConfig):
    """VPT options; defaults are VPT-shallow as V-PETL Bench runs it on VTAB-1k (p = 100, no dropout).

    Attributes:
        length: prompt length p (per task: a recipe's ``per_task`` table, e.g. ``experiment=vpt/vpt_deep``).
        dropout: dropout on the prompt vectors (training only).
    """

    length: int = 100
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ConfigError(
                f"vpt length must be an integer >= 1, got {self.length!r}; e.g. method.length=50 (per-task lengths: "
                "experiment=vpt/vpt_deep)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(
                f"vpt dropout must be in [0, 1), got {self.dropout!r}; the paper uses 0.1 (deep)"
            )


@dataclasses.dataclass
class VPTDeepConfig(VPTConfig):
    """VPT-deep: the official demo's p = 50 and dropout 0.1."""

    length: int = 50
    dropout: float = 0.1


def _new_prompt(length: int, dim: int, bound: float, like: torch.Tensor) -> nn.Parameter:
    prompt = torch.empty(length, dim, dtype=like.dtype, device=like.device)  # (p, D)
    nn.init.uniform_(prompt, -bound, bound)
    return nn.Parameter(prompt)


class _PromptWrapper(PeftModule):
    """Holds ``p`` learned prompt tokens, their dropout, and the wrapped module as ``base_layer``."""

    def __init__(
        self,
        base_layer: nn.Module,
        length: int,
        dim: int,
        num_prefix: int,
        bound: float,
        dropout: float,
        like: torch.Tensor,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.num_prefix = num_prefix
        self.prompt = _new_prompt(length, dim, bound, like)  # (p, D)
        self.dropout = nn.Dropout(dropout)


class PromptInserter(_PromptWrapper):
    """Runs ``base_layer`` (timm's ``norm_pre``), then inserts ``p`` learned tokens after the prefix tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.base_layer(x)  # (B, P + N, D): prefix tokens, then patch tokens
        prompts = self.dropout(self.prompt.expand(x.shape[0], -1, -1))  # (B, p, D), per-sample dropout
        # (B, P + p + N, D): prefix tokens, prompts, patch tokens
        return torch.cat((x[:, : self.num_prefix], prompts, x[:, self.num_prefix :]), dim=1)


class DeepPromptBlock(_PromptWrapper):
    """Replaces the tokens at the prompt positions with this block's own prompts, then runs the block."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        start, stop = self.num_prefix, self.num_prefix + self.prompt.shape[0]
        prompts = self.dropout(self.prompt.expand(x.shape[0], -1, -1))  # (B, p, D)
        x = torch.cat((x[:, :start], prompts, x[:, stop:]), dim=1)  # (B, P + p + N, D)
        return self.base_layer(x, *args, **kwargs)


def insert_prompts(model: nn.Module, length: int, dropout: float, deep: bool) -> nn.Module:
    """Put VPT prompts into a timm ViT or Eva in place.

    Args:
        model: timm VisionTransformer or Eva (any pooling).
        length: p, prompt tokens per layer.
        dropout: prompt dropout.
        deep: fresh prompts before every block (True) or only at the input (False).

    Returns:
        The same model.
    """
    dim, num_prefix = model.embed_dim, model.num_prefix_tokens
    ph, pw = model.patch_embed.patch_size
    bound = math.sqrt(6.0 / float(3 * ph * pw + dim))
    like = like_tensor(model)
    prepare_extra_tokens(model, "after_prefix", length)  # no rotary position; dropped before the head's pooling
    replace_module(
        model, "norm_pre", PromptInserter(model.norm_pre, length, dim, num_prefix, bound, dropout, like)
    )
    if deep:
        for name, block in transformer_blocks(model)[1:]:
            replace_module(model, name, DeepPromptBlock(block, length, dim, num_prefix, bound, dropout, like))
    return model


class VPTShallow(PeftMethod[VPTConfig]):
    """VPT-shallow: p prompt tokens after CLS at the input of the first block."""

    name = "vpt_shallow"
    family = "addition"
    subfamily = "prompt"
    config_cls = VPTConfig
    backbones = ("vit", "eva")
    refusals = {
        "swin": "VPT on Swin is a different variant (prompts per window and stage, KMnP/vpt "
        "vit_prompt/swin_transformer.py) that is not implemented here",
        "convnext": "a ConvNeXt has no token sequence to insert prompts into",
    }
    notes = {
        "registers": "prompts after the class and register tokens",
        "norm_pre": "prompts bypass norm_pre (learned in the first block's input space, as PETL_Vision)",
        "map_head": "prompt outputs dropped before the attention pool; prompts after 0 prefix tokens",
        "avg_pool": "prompt outputs dropped before the average over patch tokens",
        "rope": "prompts get no rotary position (identity rotation), as class and register tokens",
    }
    deep: ClassVar[bool] = False  # fresh prompts before every block

    def apply(self, model: nn.Module) -> nn.Module:
        self.check_backbone(model)
        cfg: VPTConfig = self.config
        return insert_prompts(model, cfg.length, cfg.dropout, self.deep)


class VPTDeep(VPTShallow):
    """VPT-deep: fresh p prompt tokens before every block, replacing the previous block's prompt outputs."""

    name = "vpt_deep"
    config_cls = VPTDeepConfig
    deep = True
