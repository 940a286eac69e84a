"""BitFit as the vision tables run it: train every bias term of the backbone, freeze the rest.

Paper: Ben Zaken, Ravfogel, Goldberg (2022), "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models" (ACL). Vision reference implementation: KMnP/vpt
``src/models/vit_models.py`` (``transfer_type == "tinytl-bias"``, the "Bias" row of VPT's Table 1), reused
by NOAH, SSF and V-PETL Bench (``ImageClassification/models/vision_transformer_bitfit.py``): every bias of
the ViT trains, i.e. the linear-layer biases (qkv, proj, fc1, fc2), the LayerNorm betas, the patch-embedding
bias and the final-norm bias. (The NLP paper's "bias terms" are the same set for BERT.)

Count on ViT-B/16 without head: per block qkv 2304 + proj 768 + fc1 3072 + fc2 768 + two LayerNorm betas
2x768 = 8,448; x 12 = 101,376; plus patch embedding 768 and final norm 768 = 102,912, the "0.10M" of the
VTAB-1k tables (V-PETL Bench README, VTAB-1k table "BitFit 0.10M"; NOAH's Table 1 prints the same 0.10M).

Selection is structural (the ``bias`` of every Linear / Conv / norm layer, see
:func:`peftbench.methods.layers.select.bias_parameters`), so it works on any backbone;
Swin's ``relative_position_bias_table`` is an attention-logit table, not an affine bias, and stays frozen
(a name-substring rule such as VPT's ``"bias" in name`` would have caught it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from torch import nn

from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.select import bias_parameters


@dataclasses.dataclass
class BitFitConfig(MethodConfig):
    """BitFit has no options: the set of bias terms is fixed by the backbone."""


class BitFit(PeftMethod[BitFitConfig]):
    """Train the bias of every Linear, Conv and norm layer (LayerNorm beta included), head excluded."""

    name = "bitfit"
    family = "partial"
    subfamily = "specification"
    config_cls = BitFitConfig
    backbones = ()  # defined for any backbone: the selection is by layer type
    notes = {
        "map_head": "the attention-pool head's biases train too (it is a pretrained backbone part)",
        "bias_free_linear": "bias-free layers have nothing to train (no bias is added)",
        "convnext": "conv, LayerNorm and MLP biases, the head norm's included",
    }

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        yield from bias_parameters(model)
