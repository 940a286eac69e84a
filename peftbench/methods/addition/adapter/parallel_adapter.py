"""Parallel adapter: a scaled bottleneck beside a frozen operation, reading that operation's input.

The building block the unified views share. He, Zhou, Ma, Berg-Kirkpatrick, Neubig (ICLR 2022), "Towards a
Unified View of Parameter-Efficient Transfer Learning", Section 3-4: adapters, prefix tuning and LoRA are all
a modification ``Δh`` added to a frozen sub-layer's output; the *parallel* adapter computes it from the
sub-layer's input, ``h = op(x) + s * up(act(down(x)))``. Jiang et al. (2023, arXiv 2303.00690), "Rethinking
Efficient Tuning Methods from a Unified Perspective" (U-Tuning) write every tuner as such a parallel "U-tuner"
``x' = OP(x) + U(x)`` beside a frozen operation OP, which may be the multi-head attention, the feed-forward
network or the whole block; Yu et al. (2022, arXiv 2210.00788, V-PETL) put it beside the FFN.

``sites`` chooses the frozen operations (each gets its own bottleneck in every block):

* ``attn``: beside timm's ``block.attn``, reading ``norm1(x)``;
* ``mlp``: beside ``block.mlp``, reading ``norm2(x)`` (the FFN's input; V-PETL's ``ffn_option="parallel"``
  in bruceyo/V-PETL ``models/video_swin_transformer_patt.py`` ``Mlp.forward``: the branch is computed inside
  the MLP from its input). AdaptFormer's branch reads the stream *before* ``norm2``: use ``adaptformer`` for it;
* ``block``: beside the whole block, reading the residual stream ``x``: ``block(x) + s * U(x)``.

Defaults = V-PETL's FFN adapter (``main.py`` / ``tuning_config``: ``ffn_num=64``, ``ffn_adapter_scalar="0.1"``,
``ffn_adapter_init_option="lora"``, ``ffn_adapter_layernorm_option="none"``, ReLU, dropout = the block's drop
rate, 0): r = 64, s = 0.1, down kaiming-uniform, up and biases zero (identity at init), FFN site only.
Count on ViT-B/16 without head: 12 x (768*64 + 64 + 64*768 + 768) = 1,189,632; no VTAB-1k table prints this
configuration on its own (analytic count).

Backbones: ViT, Swin, Eva (every site; Eva's rotary embeddings reach the wrapped attention or block as keyword
arguments) and ConvNeXt (``mlp`` only: the tuner beside the block's channels-last MLP reads the MLP's input,
``norm(conv_dw(x))``; ConvNeXt blocks have no attention, and a block-level tuner would read a channels-first
map, so ``attn`` and ``block`` are refused there). On LayerScale backbones the ``attn`` / ``mlp`` tuners sit
inside the layer scale (see :mod:`~peftbench.methods.layers.bottleneck`); the ``block`` tuner is outside it.

Wrap, never patch: the operation becomes the ``base_layer`` of a
:class:`~peftbench.methods.layers.bottleneck.ParallelAdapter`. Works on ViT and Swin (timm's pre-norm
``Block`` / ``SwinTransformerBlock``; the bottleneck is token-wise, so Swin's window layout does not matter).
A ``block`` site must be applied after every other method that looks for timm's blocks (VPT-deep, adapters):
it wraps the block itself. Family ``addition`` (it adds a module); it lives here because the unified methods
are built from it.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import block_width, replace_module
from peftbench.methods.layers.bottleneck import (
    ACTIVATIONS,
    INITS,
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

SITES = ("attn", "mlp", "block")  # frozen operations a parallel tuner can sit beside, applied in this order


@dataclasses.dataclass
class ParallelAdapterConfig(MethodConfig):
    """Parallel adapter options; defaults are V-PETL's FFN adapter (r = 64, s = 0.1, ReLU, zero up).

    Attributes:
        sites: the frozen operations that get a tuner: any of ``attn``, ``mlp``, ``block``.
        dim: r, the bottleneck width.
        scale: s, the fixed factor on the branch.
        activation: the bottleneck's non-linearity (``relu``, ``gelu``, ``quick_gelu``).
        dropout: dropout after the activation (training only).
        init: how down/up are initialised (``kaiming_zero`` = identity at init; see methods/layers/bottleneck.py).
    """

    sites: list[str] = dataclasses.field(default_factory=lambda: ["mlp"])
    dim: int = 64
    scale: float = 0.1
    activation: str = "relu"
    dropout: float = 0.0
    init: str = "kaiming_zero"

    def __post_init__(self) -> None:
        sites = list(self.sites) if isinstance(self.sites, (list, tuple)) else None
        if not sites or any(s not in SITES for s in sites) or len(set(sites)) != len(sites):
            raise ConfigError(
                f"parallel_adapter sites must be a non-empty list of distinct names from {', '.join(SITES)}, "
                f"got {self.sites!r}; e.g. method.sites=[mlp]"
            )
        check_positive_int("parallel_adapter", "dim", self.dim)
        if not is_positive_number(self.scale):
            raise ConfigError(
                f"parallel_adapter scale must be a number > 0, got {self.scale!r}; e.g. method.scale=0.1"
            )
        check_choice("parallel_adapter", "activation", self.activation, ACTIVATIONS)
        check_dropout("parallel_adapter", self.dropout)
        check_choice("parallel_adapter", "init", self.init, INITS)


def apply_parallel_adapters(model: nn.Module, cfg: ParallelAdapterConfig, method: str) -> nn.Module:
    """Put a parallel bottleneck beside the chosen operations of every block (``block`` sites last).

    Args:
        model: a timm ViT or Swin.
        cfg: the options.
        method: the method's name, for error messages.

    Returns:
        The same model, adapted in place.
    """
    needs = {"attn": ("attn",), "mlp": ("mlp",), "block": ("tokens",)}
    blocks = adapter_blocks(model, method, needs=tuple(n for site in cfg.sites for n in needs[site]))
    for site in (s for s in SITES if s in cfg.sites):  # attn, mlp before block: the block wrap hides them
        for name, block in blocks:
            width, like = block_width(block), reference_tensor(block)
            bottleneck = Bottleneck(width, cfg.dim, cfg.activation, cfg.dropout, cfg.init, 0.02, like)
            target = name if site == "block" else f"{name}.{site}"
            replace_module(model, target, ParallelAdapter(model.get_submodule(target), bottleneck, cfg.scale))
    return model


class ParallelAdapterMethod(PeftMethod[ParallelAdapterConfig]):
    """He et al.'s parallel adapter beside the FFN (or attention / whole block), V-PETL's r = 64, s = 0.1."""

    name = "parallel_adapter"
    family = "addition"
    subfamily = "adapter"
    config_cls = ParallelAdapterConfig
    backbones = ("vit", "eva", "swin", "convnext")
    notes = {
        "layerscale": "attn / mlp tuners inside the layer scale, the block tuner outside it",
        "convnext": "sites: [mlp] only (beside the channels-last MLP, reading its input)",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_parallel_adapters(model, self.config, self.name)
