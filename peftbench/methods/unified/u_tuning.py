"""U-Tuning: parallel "U-tuners" beside frozen operations (attention, FFN, whole block), combined.

Paper: Jiang, Mao, Huang, Lv, Zhao, Zhou (2023, arXiv 2303.00690), "Rethinking Efficient Tuning Methods from a
Unified Perspective". Every tuner is written as ``x' = OP(x) + U(x)``: a frozen operation OP (multi-head
attention, feed-forward network, or a whole block) plus a light unified tuner U that reads OP's input and runs
in parallel. Prefix tuning is such a tuner beside the attention (He et al., ICLR 2022, Eq. 7: attention over
``[P_k; K]``, ``[P_v; V]`` is the frozen attention plus a gated attention over the prefixes), an adapter is one
beside the FFN; U-Tuning derives new methods by placing tuners on other operations and combining them. No
official implementation of this paper was found (its follow-up, Res-Tuning, NeurIPS 2023, is a different paper
and was not used for values).

Expressed through composition (every U-tuner is an existing registered method, applied in order):

* MHA (``mha``): ``prefix`` (``form: direct``, l learned key/value vectors per layer, the parallel-prefix
  U-tuner), or ``parallel_adapter`` with ``sites: [attn]`` (``mha: adapter``), or ``none``;
* FFN (``ffn_dim > 0``): ``parallel_adapter`` beside ``block.mlp`` (reads ``norm2(x)``);
* block (``block_dim > 0``): ``parallel_adapter`` beside the whole block (reads the residual stream).

Defaults and count. The paper reports CIFAR-100 and FGVC (abstract); its tables with the chosen lengths /
widths and parameter counts could not be retrieved and checked for this implementation, so the defaults are a
stated choice, not the paper's table: parallel prefix of length 10 on every MHA (the smallest prefix length of
NOAH's search space, also this repository's ``prefix`` default) and a parallel FFN adapter of width 8 (the
VTAB-1k tables' adapter width), ReLU, zero-initialised up projection, scale 1; block tuner off. Count on
ViT-B/16 without head: 12 x 2 x 10 x 768 = 184,320 (prefix) + 12 x (768*8 + 8 + 8*768 + 768) = 156,768
(FFN adapter) = 341,088 (analytic; no published count matched).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig
from peftbench.methods.layers.bottleneck import ACTIVATIONS
from peftbench.methods.layers.checks import (
    check_choice,
    check_dropout,
    check_positive_int,
    is_positive_number,
)
from peftbench.methods.unified.compose import ComposedMethod

MHA_TUNERS = ("prefix", "adapter", "none")


@dataclasses.dataclass
class UTuningConfig(MethodConfig):
    """U-Tuning's tuner placement; defaults: parallel prefix (l = 10) on MHA + parallel adapter (r = 8) on FFN.

    Attributes:
        mha: the U-tuner beside the attention: ``prefix`` | ``adapter`` | ``none``.
        prefix_length: l, key/value prefix vectors per layer (``mha: prefix``).
        mha_dim: bottleneck width of the attention adapter (``mha: adapter``).
        ffn_dim: bottleneck width of the FFN adapter; 0 = no FFN tuner.
        block_dim: bottleneck width of the whole-block adapter; 0 = no block tuner.
        scale: factor on every adapter branch.
        activation: the adapters' non-linearity.
        dropout: dropout in the adapters and on the prefixes (training only).
    """

    mha: str = "prefix"
    prefix_length: int = 10
    mha_dim: int = 8
    ffn_dim: int = 8
    block_dim: int = 0
    scale: float = 1.0
    activation: str = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_choice("u_tuning", "mha", self.mha, MHA_TUNERS)
        check_positive_int("u_tuning", "prefix_length", self.prefix_length)
        check_positive_int("u_tuning", "mha_dim", self.mha_dim)
        for key in ("ffn_dim", "block_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"u_tuning {key} must be an integer >= 0 (0 = off), got {value!r}")
        if not is_positive_number(self.scale):
            raise ConfigError(
                f"u_tuning scale must be a number > 0, got {self.scale!r}; e.g. method.scale=1.0"
            )
        check_choice("u_tuning", "activation", self.activation, ACTIVATIONS)
        check_dropout("u_tuning", self.dropout)
        if self.mha == "none" and self.ffn_dim == 0 and self.block_dim == 0:
            raise ConfigError(
                "u_tuning has no tuner: set method.mha=prefix|adapter, method.ffn_dim>0 or method.block_dim>0"
            )

    def _adapter(self, site: str, dim: int) -> tuple[str, dict[str, Any]]:
        options = {"sites": [site], "dim": dim, "scale": self.scale, "activation": self.activation}
        return "parallel_adapter", {**options, "dropout": self.dropout, "init": "kaiming_zero"}

    def component_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """The composition, in an order where every tuner finds the timm layer it needs (block last)."""
        specs: list[tuple[str, dict[str, Any]]] = []
        if self.mha == "prefix":
            specs.append(
                ("prefix", {"form": "direct", "length": self.prefix_length, "dropout": self.dropout})
            )
        elif self.mha == "adapter":
            specs.append(self._adapter("attn", self.mha_dim))
        if self.ffn_dim:
            specs.append(self._adapter("mlp", self.ffn_dim))
        if self.block_dim:
            specs.append(self._adapter("block", self.block_dim))
        return specs


class UTuning(ComposedMethod[UTuningConfig]):
    """U-Tuning (Jiang et al., 2023): parallel tuners beside frozen MHA / FFN / block, combined."""

    name = "u_tuning"
    config_cls = UTuningConfig
