"""The two baselines every VTAB-1k / FGVC table reports.

* ``full``: fine-tune every backbone parameter (VPT's "Full" row, 85.8M for ViT-B/16).
* ``linear``: train the classification head only (a linear probe on the frozen backbone; 0 M
  besides the head).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from peftbench.methods.base import MethodConfig, PeftMethod


class FullFinetune(PeftMethod[MethodConfig]):
    """Train all parameters of the backbone."""

    name = "full"
    family = "baseline"
    subfamily = "full"

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        yield from model.parameters()


class LinearProbe(PeftMethod[MethodConfig]):
    """Train only the classification head (the harness adds it); the backbone stays frozen."""

    name = "linear"
    family = "baseline"
    subfamily = "linear"

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        return iter(())
