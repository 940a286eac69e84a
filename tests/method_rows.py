"""The table every registered method has a row in; the contract tests iterate over it.

Per-method quirks live in the row, never in ``if`` branches of the tests. Each method group keeps its rows in
its own ``tests/rows_<group>.py`` (adapter, prompt, reparam, spec, unified, searched), collected here with the
baselines.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftbench.methods.layers.blocks import FAMILIES
from tests.tiny_models import ARCHS

ALL_FAMILIES = FAMILIES
TRANSFORMERS = ("vit", "eva", "swin")  # families with attention blocks
TOKEN_VITS = ("vit", "eva")  # one token sequence through every block (prompts, side networks)
# bias-free Linears in the blocks (EVA-02's k_proj, DINOv3's qkv): a bias update cannot merge there
BIAS_FREE = {"eva02": "bias", "dinov3": "bias"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One method's expectations.

    Attributes:
        name: registry name.
        options: config overrides used for the tiny-model tests (e.g. a smaller prompt length).
        zero_params: name suffixes of the parameters that are exactly zero at init, which make the
            method an identity at init (None: the paper does not initialise to identity).
        vit_b16_params: trainable parameters without the head on ViT-B/16 with the default config
            (None only for baselines without method parameters checked elsewhere).
        vit_b16_formula: the analytic formula for ``vit_b16_params`` (a function of nothing, so the
            test recomputes it), pinned against the registry's count.
        source: which paper table the count matches.
        backbones: backbone families the method is defined for (the method's own ``backbones``); others must
            raise. The tiny architectures of each family are ``tests.tiny_models.ARCHS``.
        refused: tiny architecture -> a fragment of the refusal expected there although the family is
            supported (a feature the method is not defined for, e.g. FacT on EVA-02's SwiGLU MLP).
        arch_options: tiny architecture -> option overrides there (e.g. LoRA's ``targets: mlp`` on ConvNeXt).
        no_merge: tiny architecture -> a fragment of the merge refusal expected there (a bias-free layer that
            cannot absorb the update); the model must be left unchanged.
        mergeable: the method folds back into a plain backbone.
        requires: optional packages the method needs (its tests skip cleanly without them).
        vit_b16_options: config overrides for the ViT-B/16 count (e.g. the task a published architecture
            belongs to); empty = the registered defaults.
        vit_b16_head: head parameters on ViT-B/16 with 100 classes (a method whose classifier reads a side
            network's narrower features has a smaller head).
    """

    name: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    zero_params: tuple[str, ...] | None = None
    vit_b16_params: int | None = None
    vit_b16_formula: Callable[[], int] | None = None
    source: str = ""
    backbones: tuple[str, ...] = ALL_FAMILIES
    refused: dict[str, str] = dataclasses.field(default_factory=dict)
    arch_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    no_merge: dict[str, str] = dataclasses.field(default_factory=dict)
    mergeable: bool = False
    requires: tuple[str, ...] = ()
    vit_b16_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    vit_b16_head: int = 769 * 100

    def supports(self, arch: str) -> bool:
        """Whether the method must accept the tiny architecture ``arch`` (its family and features)."""
        return ARCHS[arch].family in self.backbones and arch not in self.refused

    def options_for(self, arch: str) -> dict[str, Any]:
        """The test options on ``arch``."""
        return {**self.options, **self.arch_options.get(arch, {})}


D, L, MLP = 768, 12, 3072  # ViT-B/16

BASELINE_ROWS = [
    Row("full", vit_b16_params=85_798_656, vit_b16_formula=lambda: 85_798_656, source="VPT Table 1 'Full' (85.8M)"),
    Row("linear", vit_b16_params=0, vit_b16_formula=lambda: 0, source="VPT Table 1 'Linear' (0 M besides head)"),
]


def all_rows() -> list[Row]:
    """Baseline rows plus the ``ROWS`` list of every ``tests/rows_*.py`` file (one per method group)."""
    rows = list(BASELINE_ROWS)
    for path in sorted(Path(__file__).parent.glob("rows_*.py")):
        rows.extend(importlib.import_module(f"tests.{path.stem}").ROWS)
    return rows
