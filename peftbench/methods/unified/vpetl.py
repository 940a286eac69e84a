"""V-PETL's unified scheme: parallel attention (PATT) on the keys/values + a parallel adapter beside the FFN.

Paper: Yu, Chang, Liu, Tian, Chen (2022, arXiv 2210.00788), "Towards a Unified View on Visual
Parameter-Efficient Transfer Learning" (V-PETL). Reference implementation followed: bruceyo/V-PETL
``models/video_swin_transformer_patt.py`` with the README's training command and ``main.py``'s tuning config.
The paper's recommended scheme ("Swin-BAPAT": Bottleneck Adapter + PArallel aTtention) puts in every block

* PATT (``--att_prefix --att_prefix_mode patt_kv``): a bottleneck ``Linear(D, m) -> tanh -> Linear(m, 2D)``
  (biases as the qkv Linear) computed from the attention input, added to the keys and values with a factor
  ``s_a``: ``K + s_a dK(x)``, ``V + s_a dV(x)``; the README's setting ``--att_mid_dim 128
  --att_prefix_scale 0.8``. This is the ``patt`` form of the registered ``prefix`` method;
* a parallel adapter beside the FFN (``--ffn_adapt``, ``ffn_option="parallel"``): ``Mlp.forward`` adds
  ``s_f * up(relu(down(x)))`` computed from the MLP's own input (after ``norm2``), ``ffn_num = 64``,
  ``ffn_adapter_scalar = 0.1``, ``init_option = "lora"`` (down kaiming, up and biases zero), no LayerNorm,
  dropout = the block's drop rate (0). This is the registered ``parallel_adapter`` with ``sites: [mlp]``.

So ``vpetl_unified`` is a composition (``prefix`` with ``form: patt``, then ``parallel_adapter``) with typed
options for the paper's knobs. The same values hold for every backbone in the repository; the repository
publishes only video Swin-B settings and no ViT-B/16 or VTAB-1k configuration, so the ViT-B/16 defaults here
are those README values (m = 128, s_a = 0.8, r = 64, s_f = 0.1). No ViT-B/16 parameter count of this scheme could be
retrieved from the paper and checked, so the pinned count is analytic, on ViT-B/16 without head:
PATT 12 x [(768*128 + 128) + (128*1536 + 1536)] = 3,558,912, plus the adapter 12 x (768*64 + 64 + 64*768 + 768)
= 1,189,632: 4,748,544 in all. Deliberate deviations: the repository also trains the classifier of the video
head (``--tuned_backbone_layer_fc``), here the harness's head policy applies; its PATT code is for (video)
Swin, here the same branch runs on timm ViT and Swin attention.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig
from peftbench.methods.layers.checks import check_dropout, check_positive_int, is_positive_number
from peftbench.methods.unified.compose import ComposedMethod


@dataclasses.dataclass
class VPETLConfig(MethodConfig):
    """V-PETL's BAPAT scheme; defaults are the reference repository's README / ``main.py`` values.

    Attributes:
        patt_dim: m, the PATT bottleneck width (``--att_mid_dim``).
        patt_scale: s_a, the factor on the PATT key/value offsets (``--att_prefix_scale``).
        adapter_dim: r, the FFN adapter's bottleneck width (``ffn_num``).
        adapter_scale: s_f, the factor on the FFN adapter (``ffn_adapter_scalar``).
        dropout: dropout inside the FFN adapter (the block's drop rate in the reference, 0).
    """

    patt_dim: int = 128
    patt_scale: float = 0.8
    adapter_dim: int = 64
    adapter_scale: float = 0.1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_positive_int("vpetl_unified", "patt_dim", self.patt_dim)
        check_positive_int("vpetl_unified", "adapter_dim", self.adapter_dim)
        for key in ("patt_scale", "adapter_scale"):
            if not is_positive_number(getattr(self, key)):
                raise ConfigError(
                    f"vpetl_unified {key} must be a number > 0, got {getattr(self, key)!r}; e.g. method.{key}=0.8"
                )
        check_dropout("vpetl_unified", self.dropout)

    def component_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """The composition: PATT in every attention, then the parallel FFN adapter."""
        return [
            ("prefix", {"form": "patt", "mid_dim": self.patt_dim, "scale": self.patt_scale, "dropout": 0.0}),
            (
                "parallel_adapter",
                {
                    "sites": ["mlp"],
                    "dim": self.adapter_dim,
                    "scale": self.adapter_scale,
                    "dropout": self.dropout,
                },
            ),
        ]


class VPETLUnified(ComposedMethod[VPETLConfig]):
    """V-PETL (Yu et al., 2022): PATT (m = 128, s = 0.8) + parallel FFN adapter (r = 64, s = 0.1)."""

    name = "vpetl_unified"
    config_cls = VPETLConfig
