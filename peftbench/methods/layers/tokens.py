"""Extra tokens in a ViT / Eva sequence (VPT prompts, NOAH's prompts): no rotary position, never pooled.

A method that puts learned tokens into the token sequence opts in with two wrappers:

* :class:`RotaryFreeTokens` around every Eva attention (EVA-02, DINOv3 apply rotary position embeddings to
  the tokens after the prefix tokens and expect exactly one rotary row per patch). The wrapper pads the
  rotary table with identity rotations (sin 0, cos 1) at the extra tokens' positions, so the extra tokens get
  **no rotary position**, as the class and register tokens, and the patches keep theirs.
* :class:`ExtraTokenRemover` around the final ``norm``: after the last block the extra tokens are dropped, so
  the head's pooling sees exactly the tokens it sees without the method: the class token (``token``), the
  patch tokens (``avg``: EVA-02) or the sequence the attention-pool head reads (``map``: SigLIP). VPT's
  classifier reads only the class token; dropping the prompt outputs before any pooling is the same rule for
  every head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peftbench.methods.base import PeftModule
from peftbench.methods.layers.blocks import backbone_family, replace_module, transformer_blocks

PLACES = ("after_prefix", "end")  # where the extra tokens sit: right after the prefix tokens, or at the end


def _check_place(where: str) -> None:
    if where not in PLACES:
        raise ValueError(f"where must be one of {PLACES}, got {where!r}")


class RotaryFreeTokens(PeftModule):
    """Runs an Eva attention with its rotary table padded by identity rotations for the extra tokens.

    Args:
        base_layer: timm ``EvaAttention`` (it rotates ``q``, ``k`` of the tokens after ``num_prefix_tokens``).
        where: ``after_prefix`` (VPT) or ``end`` (NOAH): where the extra tokens sit in the sequence.
    """

    def __init__(self, base_layer: nn.Module, where: str) -> None:
        super().__init__()
        _check_place(where)
        self.base_layer = base_layer
        self.where = where

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if rope is not None:
            extra = x.shape[1] - int(self.base_layer.num_prefix_tokens) - rope.shape[-2]
            if extra > 0:
                sin, cos = rope.tensor_split(2, -1)  # timm's 'cat' layout: [sin | cos]
                pad = torch.cat((torch.zeros_like(sin[..., :1, :]), torch.ones_like(cos[..., :1, :])), dim=-1)
                pad = pad.expand(*rope.shape[:-2], extra, rope.shape[-1])  # (..., extra, 2 * d): identity
                rope = torch.cat((pad, rope) if self.where == "after_prefix" else (rope, pad), dim=-2)
        return self.base_layer(x, rope=rope, **kwargs)


class ExtraTokenRemover(PeftModule):
    """``base_layer`` (the final norm), then the extra tokens dropped from the sequence.

    Args:
        base_layer: the model's final ``norm`` (applied to every token, as without the method).
        num_prefix: prefix tokens (class, registers) in front of the patches.
        where: ``after_prefix`` or ``end``.
        count: how many extra tokens; None: everything beyond ``keep`` tokens.
        keep: prefix + patch tokens, used when ``count`` is None.
    """

    def __init__(self, base_layer: nn.Module, num_prefix: int, where: str, count: int | None = None,
                 keep: int | None = None) -> None:
        super().__init__()
        _check_place(where)
        if count is None and keep is None:
            raise ValueError("give count or keep")
        self.base_layer = base_layer
        self.num_prefix, self.where, self.count, self.keep = int(num_prefix), where, count, keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.base_layer(x)  # (B, P + p + N, D) or (B, P + N + p, D)
        extra = self.count if self.count is not None else x.shape[1] - int(self.keep)  # type: ignore[arg-type]
        if extra <= 0:
            return x
        if self.where == "end":
            return x[:, : x.shape[1] - extra]
        return torch.cat((x[:, : self.num_prefix], x[:, self.num_prefix + extra :]), dim=1)  # (B, P + N, D)


def prepare_extra_tokens(model: nn.Module, where: str, count: int | None = None) -> None:
    """Make ``model`` (timm ViT or Eva) take extra tokens at ``where``: no rotary position, dropped before pooling.

    Args:
        model: the backbone, before the method inserts its tokens (its blocks unwrapped).
        where: ``after_prefix`` or ``end``.
        count: the fixed number of extra tokens at the head; None: whatever exceeds prefix + patch tokens.
    """
    _check_place(where)
    if backbone_family(model) == "eva" and getattr(model, "rope", None) is not None:
        for name, block in transformer_blocks(model):
            replace_module(model, f"{name}.attn", RotaryFreeTokens(block.attn, where))
    num_prefix = int(model.num_prefix_tokens)
    keep = None if count is not None else num_prefix + int(model.patch_embed.num_patches)
    replace_module(model, "norm", ExtraTokenRemover(model.norm, num_prefix, where, count, keep))


def like_tensor(model: nn.Module) -> torch.Tensor:
    """A backbone parameter whose dtype and device new token parameters take."""
    for name in ("pos_embed", "cls_token", "reg_token"):
        t = getattr(model, name, None)
        if isinstance(t, torch.Tensor):
            return t
    return model.patch_embed.proj.weight
