"""Partial-k: fine-tune the last k transformer blocks and the final norm, freeze everything else.

Paper: Jia, Tang, Chen, Cardie, Belongie, Hariharan, Lim (2022), "Visual Prompt Tuning" (ECCV), baseline
"Partial-k" of Table 1 (after Yosinski et al. 2014 and He et al. 2022). Reference implementation:
KMnP/vpt ``src/models/vit_models.py`` (``transfer_type == "partial-1"``): the parameters of the last
encoder layer plus ``encoder_norm`` train; ``partial-2`` / ``partial-4`` extend it to the last 2 / 4 layers.

Default: k = 1 ("Partial-1"). Count on ViT-B/16 without head: one block (qkv 768x2304+2304, proj
768x768+768, fc1 768x3072+3072, fc2 3072x768+768, two LayerNorms 2x1536) = 7,087,872, plus the final
LayerNorm (1,536) = 7,089,408 (7.09M, 8.26 % of the 85.8M backbone). VPT reports Partial-1 only relative
to the total parameter budget (head included), not as a head-free count, so the count here is the
analytic count of exactly what the reference code trains.

Swin and ConvNeXt (deliberate generalisation; VPT defines Partial-k for ViT): the blocks are counted in
forward order across stages; a stage's ``downsample`` (Swin's PatchMerging, ConvNeXt's norm + strided conv)
trains when it lies after the first selected block, i.e. the trained part is exactly the tail of the network
from that block on. After the blocks, everything before the classifier trains with them
(:func:`~peftbench.methods.layers.blocks.post_block_modules`): the final norm, EVA-02's ``fc_norm``, SigLIP's
attention-pool head, ConvNeXt's head norm. On Eva (EVA-02, DINOv3) the blocks are ``blocks.i`` as on ViT; a
block's LayerScale vectors train with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, backbone_family
from peftbench.methods.layers.blocks import backbone_blocks, post_block_modules
from peftbench.methods.layers.select import unique


@dataclasses.dataclass
class PartialKConfig(MethodConfig):
    """Partial-k options.

    Attributes:
        k: how many of the last transformer blocks train (VPT's Partial-1: k = 1).
    """

    k: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(
                f"partial_k k must be an integer >= 1 (the number of last blocks to train), got {self.k!r}; "
                "e.g. method.k=1 for VPT's Partial-1"
            )


def _forward_units(model: nn.Module) -> list[tuple[bool, nn.Module]]:
    """``(is_block, module)`` in forward order: the blocks, and Swin's downsample layers between stages."""
    family = backbone_family(model)
    if family in ("swin", "convnext"):
        units: list[tuple[bool, nn.Module]] = []
        for stage in model.layers if family == "swin" else model.stages:
            down = getattr(stage, "downsample", None)
            if isinstance(down, nn.Module) and any(True for _ in down.parameters()):
                units.append((False, down))
            units.extend((True, b) for b in stage.blocks)
        return units
    return [(True, b) for _, b in backbone_blocks(model)]


def tail_modules(model: nn.Module, k: int) -> list[nn.Module]:
    """The modules that train under Partial-k: everything from the k-th last block on, the classifier excluded.

    Args:
        model: timm VisionTransformer, Eva, SwinTransformer or ConvNeXt.
        k: number of last blocks.

    Returns:
        The selected modules in forward order.
    """
    units = _forward_units(model)
    block_positions = [i for i, (is_block, _) in enumerate(units) if is_block]
    if k > len(block_positions):
        raise ConfigError(
            f"partial_k k={k} but {type(model).__name__} has only {len(block_positions)} blocks; "
            f"choose k in 1..{len(block_positions)} (method.k=...)"
        )
    start = block_positions[-k]
    return [m for _, m in units[start:]] + post_block_modules(model)


class PartialK(PeftMethod[PartialKConfig]):
    """Train the last k blocks (+ final norm) of the backbone, as VPT's Partial-k baseline."""

    name = "partial_k"
    family = "partial"
    subfamily = "specification"
    config_cls = PartialKConfig
    backbones = ("vit", "eva", "swin", "convnext")
    notes = {
        "map_head": "the attention-pool head trains with the last k blocks",
        "avg_pool": "fc_norm trains with the last k blocks",
        "convnext": "blocks counted across stages; downsampling layers in the tail and the head norm train",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        tail_modules(model, self.config.k)  # validate k against the depth
        return model

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        modules = tail_modules(model, self.config.k)
        yield from unique(p for m in modules for p in m.parameters())
