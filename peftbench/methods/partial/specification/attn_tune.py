"""Attention tuning: fine-tune only the multi-head self-attention layers of every block.

Paper: Touvron, Cord, El-Nouby, Verbeek, Jegou (2022), "Three things everyone should know about Vision
Transformers" (ECCV), Section 4: fine-tuning the attention weights is enough to adapt a ViT to a higher
resolution and to other classification tasks. Reference implementation: facebookresearch/deit ``main.py``
flag ``--attn-only``: every parameter under a block's ``attn`` trains (qkv and proj, weights AND biases),
the position embedding trains too (the paper changes resolution), the patch embedding stays frozen, the
head trains (here: the harness's head policy).

Count on ViT-B/16 without head: per block qkv 768x2304 + 2304 and proj 768x768 + 768 = 2,362,368;
x 12 = 28,348,416; plus the position embedding 197 x 768 = 151,296 -> 28,499,712 (28.5M). The paper
reports no VTAB-1k row; the pinned count is what the official flag trains. ``train_pos_embed=false`` gives
the attention-only 28,348,416.

Selection is structural: all parameters of each block's ``attn`` module (on Swin this includes the
window attention's relative position bias table, as the reference rule does; on Eva the q/k/v projections
or the fused qkv with its q/v bias vectors), plus the backbone's absolute position embedding when it has one
(DINOv3 and Swin have none: rotary or relative positions live in the attention). LayerScale, registers and
SigLIP's attention-pool head are not attention layers of the blocks and stay frozen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import transformer_blocks
from peftbench.methods.layers.select import unique


@dataclasses.dataclass
class AttnTuneConfig(MethodConfig):
    """Attention-tuning options.

    Attributes:
        train_pos_embed: also train the absolute position embedding (the official ``--attn-only`` does).
    """

    train_pos_embed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.train_pos_embed, bool):
            raise ConfigError(
                f"attn_tune train_pos_embed must be true or false, got {self.train_pos_embed!r}"
            )


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The ``attn`` module of every transformer block.

    Args:
        model: timm VisionTransformer or SwinTransformer.

    Returns:
        One attention module per block, in order.
    """
    found = []
    for name, block in transformer_blocks(model):
        attn = getattr(block, "attn", None)
        if not isinstance(attn, nn.Module):
            raise MethodNotSupportedError(
                f"block {name!r} of {type(model).__name__} has no 'attn' module; attn_tune needs timm's "
                "standard ViT/Swin blocks"
            )
        found.append(attn)
    return found


class AttnTune(PeftMethod[AttnTuneConfig]):
    """Train every block's self-attention (qkv + proj, weights and biases) and the position embedding."""

    name = "attn_tune"
    family = "partial"
    subfamily = "specification"
    config_cls = AttnTuneConfig
    backbones = ("vit", "eva", "swin")
    refusals = {"convnext": "a ConvNeXt block has no self-attention to tune"}
    notes = {"rope": "no absolute position embedding to train where positions are rotary only (DINOv3)"}

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        params = [p for attn in attention_modules(model) for p in attn.parameters()]
        pos_embed = getattr(model, "pos_embed", None)
        if self.config.train_pos_embed and isinstance(pos_embed, nn.Parameter):
            params.append(pos_embed)
        yield from unique(params)
