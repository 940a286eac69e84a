"""LN-Tune: train the gamma and beta of every LayerNorm, freeze everything else.

Paper: Basu, Massiceti, Hu, Feizi (2023/AAAI 2024), "Strong Baselines for Parameter Efficient Few-Shot
Fine-tuning": fine-tuning only the LayerNorm parameters ("LN-Tune") is a strong baseline for supervised
ViTs. V-PETL Bench (Xin et al. 2024) runs it as "LN TUNE" (``ImageClassification/models/
vision_transformer_lntune.py`` and the dense-prediction tables); the survey files it under partial /
specification tuning.

Count on ViT-B/16 without head: 2 LayerNorms per block x 2 x 768 = 3,072; x 12 = 36,864; plus the final
norm 1,536 = 38,400 (0.04M). No VTAB-1k table prints an LN-Tune row for ViT-B/16, so the pinned count is
the analytic one. Works on any backbone (selection by type: every ``nn.LayerNorm`` outside the head,
including Swin's patch-embedding and PatchMerging norms).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from torch import nn

from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.select import layernorm_parameters


@dataclasses.dataclass
class LNTuneConfig(MethodConfig):
    """LN-Tune has no options: every LayerNorm's gamma and beta train."""


class LNTune(PeftMethod[LNTuneConfig]):
    """Train gamma and beta of every LayerNorm of the backbone (head excluded)."""

    name = "ln_tune"
    family = "partial"
    subfamily = "specification"
    config_cls = LNTuneConfig
    backbones = ()  # defined for any backbone with LayerNorms
    notes = {
        "norm_pre": "norm_pre trains, as every LayerNorm",
        "map_head": "the attention-pool head's LayerNorm trains too",
        "swiglu": "the SwiGLU inner LayerNorm trains too",
        "convnext": "channels-first LayerNorm2d (stem, downsampling, head) and the blocks' LayerNorms",
    }

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        yield from layernorm_parameters(model)
