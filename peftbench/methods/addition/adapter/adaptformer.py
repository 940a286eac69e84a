"""AdaptFormer: a scaled bottleneck in parallel with every block's MLP, reading the un-normalised stream.

Paper: Chen, Ge, Tong, Wang, Song, Wang, Luo (NeurIPS 2022), "AdaptFormer: Adapting Vision Transformers for
Scalable Visual Recognition". Reference implementation followed: ShoufaChen/AdaptFormer
``models/adapter.py`` (``Adapter``), ``models/custom_modules.py`` (``Block.forward``) and the image
``tuning_config`` of ``main_image.py``:

* branch ``s * up(dropout(relu(down(x))))``, down D -> r and up r -> D with biases, dropout 0.1 (the
  ``Block``'s ``dropout=0.1``), s = 0.1 (``ffn_adapter_scalar="0.1"``), no LayerNorm inside
  (``ffn_adapter_layernorm_option="none"``);
* ``ffn_option="parallel"``: the branch reads ``x``, the block's stream after the attention residual and
  *before* ``norm2``; the block computes ``x + drop_path(mlp(norm2(x))) + branch(x)``;
* init ``"lora"``: down kaiming-uniform (a = sqrt 5), up zero, both biases zero, so the model is the
  backbone at init.

Defaults = the VTAB-1k row "AdaptFormer 0.16M" (V-PETL Bench README VTAB-1k table, mean 72.32; its
``scripts/run_vit_adaptformer.sh`` sets ``topN=8``): r = 8 (the paper's own image/video setting is 64).
Count on ViT-B/16 without head: 12 x (768*8 + 8 + 8*768 + 768) = 156,768 (0.16M). V-PETL Bench's code
(``ImageClassification/models/vision_transformer_adaptformer.py``) keeps the class defaults
``adapter_layernorm_option="in"`` and scale 1.0 (that is ``layernorm: in, scale: 1.0`` here, 175,200
parameters, although its table prints 0.16M).

Structure (wrap, never patch): the branch needs the stream before ``norm2``, which timm's blocks only
pass through ``norm2`` into ``mlp``. So ``block.norm2`` moves into the wrapper: ``block.mlp`` becomes a
:class:`~peftbench.methods.layers.bottleneck.ParallelAdapter` whose frozen ``base_layer`` is
``Sequential(norm=<original norm2>, mlp=<original mlp>)`` and ``block.norm2`` becomes ``nn.Identity``. The
block then computes ``x + drop_path2(ls2(mlp(norm2(x)) + s * branch(x)))``. Works on ViT, Swin and Eva
(same ``norm2`` -> ``mlp`` pattern; EVA-02's SwiGLU MLP is the frozen path as it is). Deliberate deviations:
the reference keeps the branch outside drop-path; here it shares ``drop_path2`` with the MLP, identical with
drop-path 0 (the harness default). On LayerScale backbones (DINOv2, DeiT-III, DINOv3) the branch is inside the
layer scale, as PETL_Vision's parallel modules on DINOv2 (see :mod:`~peftbench.methods.layers.bottleneck`);
the reference's ViT-B has none.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import block_width, replace_module
from peftbench.methods.layers.bottleneck import (
    Bottleneck,
    ParallelAdapter,
    adapter_blocks,
    reference_tensor,
)
from peftbench.methods.layers.checks import (
    check_choice,
    check_dropout,
    check_positive_int,
    is_positive_number,
)

LAYERNORM_OPTIONS = ("none", "in")  # the reference's adapter_layernorm_option values that this module offers


@dataclasses.dataclass
class AdaptFormerConfig(MethodConfig):
    """AdaptFormer options; defaults are the VTAB-1k tables' r = 8 with the paper's s = 0.1.

    Attributes:
        dim: r, the bottleneck width.
        scale: s, the fixed factor on the branch.
        dropout: dropout after the ReLU (training only).
        layernorm: ``none`` (the paper) or ``in`` (a trainable LayerNorm on the branch input, V-PETL's code).
    """

    dim: int = 8
    scale: float = 0.1
    dropout: float = 0.1
    layernorm: str = "none"

    def __post_init__(self) -> None:
        check_positive_int("adaptformer", "dim", self.dim)
        if not is_positive_number(self.scale):
            raise ConfigError(
                f"adaptformer scale must be a number > 0, got {self.scale!r}; the paper uses method.scale=0.1"
            )
        check_dropout("adaptformer", self.dropout)
        check_choice("adaptformer", "layernorm", self.layernorm, LAYERNORM_OPTIONS)


def apply_adaptformer(model: nn.Module, cfg: AdaptFormerConfig, method: str = "adaptformer") -> nn.Module:
    """Put an AdaptFormer branch in parallel with every block's ``norm2 -> mlp``.

    Args:
        model: a timm ViT or Swin.
        cfg: the AdaptFormer options.
        method: the method's name, for error messages.

    Returns:
        The same model, adapted in place.
    """
    for name, block in adapter_blocks(model, method, needs=("mlp", "norm2")):
        width, like = block_width(block), reference_tensor(block)
        branch = Bottleneck(
            width, cfg.dim, "relu", cfg.dropout, "kaiming_zero", 0.0, like, layernorm=cfg.layernorm == "in"
        )
        base = nn.Sequential(OrderedDict(norm=block.norm2, mlp=block.mlp))  # the frozen original path
        replace_module(model, f"{name}.norm2", nn.Identity())
        replace_module(model, f"{name}.mlp", ParallelAdapter(base, branch, cfg.scale))
    return model


class AdaptFormer(PeftMethod[AdaptFormerConfig]):
    """AdaptFormer: ``x + mlp(norm2(x)) + s * up(relu(down(x)))`` in every block, r = 8, s = 0.1."""

    name = "adaptformer"
    family = "addition"
    subfamily = "adapter"
    config_cls = AdaptFormerConfig
    backbones = ("vit", "eva", "swin")
    notes = {
        "layerscale": "branch inside the layer scale: ls(mlp(norm2(x)) + s B(x)) (PETL_Vision on DINOv2)",
        "swiglu": "the SwiGLU MLP is the frozen path as it is",
    }
    refusals = {
        "convnext": "its branch reads the residual stream beside a pre-norm FFN; a ConvNeXt block's MLP reads the "
        "depthwise conv's normalised output, so there is no such stream (use adapter or parallel_adapter)"
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_adaptformer(model, self.config, self.name)
