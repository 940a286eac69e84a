"""Sequential bottleneck adapters: ``adapter`` (the VTAB-1k tables' one per block) and ``adapter_houlsby``.

Paper: Houlsby, Giurgiu, Jastrzebski, Morrone, de Laroussilhe, Gesmundo, Attariyan, Gelly (ICML 2019),
"Parameter-Efficient Transfer Learning for NLP". An adapter is ``h + up(act(down(h)))`` (D -> r -> D with
biases, an inner skip) on a sub-layer's output ``h``, before the block's residual add. Houlsby puts two
per layer (after the attention output projection and after the feed-forward output), inits them near
identity and also trains the LayerNorms. Reference implementation: google-research/adapter-bert
``modeling.py`` (``feedforward_adapter``: weights truncated-normal with ``init_scale = 1e-3`` (the paper's
text says 1e-2), zero biases, GELU).

``adapter`` (default = the "Adapter 0.16M" row of the VTAB-1k tables, V-PETL Bench's README table with
mean 71.44): the setting of ZhangYuanhan-AI/NOAH ``experiments/Adapter/ViT-B_prompt_adapter_8.yaml``
(``ADAPTER_DIM: 8`` in all 12 blocks) with ``model/module/adapter_super.py`` (``AdapterSuper``: Linear D -> 8,
QuickGELU, dropout, Linear 8 -> D, inner skip) placed by ``model/supernet_vision_transformer_timm.py``
(``Block.forward``: ``x + adapter(drop_path(mlp(norm2(x))))``, one adapter on the MLP output), dropout 0.1
(``--drop_rate_adapter`` default of ``supernet_train_prompt.py``). Init: ``AdapterSuper`` sets xavier
weights, but ``VisionTransformer.__init__`` then runs timm's ``_init_vit_weights`` over the whole model
(trunc-normal std 0.02 with cut at +-2, zero biases) and the adapters are not in the pretrained file, so
the adapters that trained had N(0, 0.02^2) weights and zero biases: not an identity at init (no tensor is
zero). V-PETL Bench's copy (``ImageClassification/models/vision_transformer_adapter.py``, ``topN = 96``,
768 / 96 = 8, nn.GELU, no dropout) zero-inits in the class and is re-initialised the same way.
NOAH's recipe (``configs/Adapter/VTAB/slurm_train_adapter_vtab.sh``): AdamW lr 1e-3, wd 1e-4, batch 64,
100 epochs, no augmentation. Count on ViT-B/16 without head: 12 x (768*8 + 8 + 8*768 + 768) = 156,768
(0.16M, equal to the table).

``adapter_houlsby``: Houlsby's form on ViT: two adapters per block (``placement: attn_mlp``), GELU, no
dropout, truncated-normal init with std 1e-3 (the reference code), every LayerNorm trained
(``train_norms``), r = 8 (Houlsby sweeps {8, 64, 256}; 8 keeps it comparable with the row above).
Count: 24 x 13,064 + 25 LayerNorms x 1,536 = 313,536 + 38,400 = 351,936. No VTAB-1k table prints this
exact configuration; the pinned count is the analytic one.

Placement (wrap, never patch): ``block.mlp`` / ``block.attn`` become a
:class:`~peftbench.methods.layers.bottleneck.SequentialAdapter` keeping the original as
``base_layer``. Works on ViT and Swin (on Swin the attention adapter sees window tokens; it is token-wise,
so the result equals applying it after the window merge) and on Eva (EVA-02's SwiGLU MLP, DINOv3: the
adapter reads the MLP's D-wide output whatever its inside). ConvNeXt (``placement: mlp`` only, the default
``adapter``): the adapter reads the output of the block's channels-last MLP, the last layer of its single
residual branch, before the layer scale; ``adapter_houlsby``'s attention adapter has no place there and is
refused. Deliberate deviations: NOAH applies the adapter after drop-path; wrapping ``mlp`` applies it before
``ls2`` / ``drop_path2``, identical with drop-path 0 (the harness default). On LayerScale backbones (DINOv2,
DeiT-III, DINOv3, ConvNeXt) the adapter is inside the layer scale, ``ls2(h + A(h))`` (see
:mod:`~peftbench.methods.layers.bottleneck`); NOAH's ViT-B/16 has no layer scale, so there it is the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, method_owned_parameters
from peftbench.methods.layers.blocks import block_width, replace_module
from peftbench.methods.layers.bottleneck import (
    ACTIVATIONS,
    INITS,
    Bottleneck,
    SequentialAdapter,
    adapter_blocks,
    reference_tensor,
)
from peftbench.methods.layers.checks import (
    check_choice,
    check_dropout,
    check_positive_int,
    is_positive_number,
)
from peftbench.methods.layers.select import layernorm_parameters

# placement -> the block sub-layers whose output gets an adapter, in forward order
PLACEMENTS: dict[str, tuple[str, ...]] = {"mlp": ("mlp",), "attn": ("attn",), "attn_mlp": ("attn", "mlp")}


@dataclasses.dataclass
class AdapterConfig(MethodConfig):
    """Sequential adapter options; defaults reproduce NOAH's Adapter-8 (the tables' 0.16M row).

    Attributes:
        dim: r, the bottleneck width.
        placement: which sub-layers get an adapter on their output (see :data:`PLACEMENTS`).
        activation: the bottleneck's non-linearity (``gelu``, ``quick_gelu``, ``relu``).
        dropout: dropout after the activation (training only).
        init: how down/up are initialised (``normal``, ``trunc_normal``, ``kaiming_zero``, ...); biases 0.
        init_std: standard deviation of the normal inits.
        train_norms: also train every LayerNorm of the backbone (Houlsby et al.).
    """

    dim: int = 8
    placement: str = "mlp"
    activation: str = "quick_gelu"
    dropout: float = 0.1
    init: str = "normal"
    init_std: float = 0.02
    train_norms: bool = False

    def __post_init__(self) -> None:
        check_positive_int("adapter", "dim", self.dim)
        check_choice("adapter", "placement", self.placement, PLACEMENTS)
        check_choice("adapter", "activation", self.activation, ACTIVATIONS)
        check_dropout("adapter", self.dropout)
        check_choice("adapter", "init", self.init, INITS)
        if not is_positive_number(self.init_std):
            raise ConfigError(
                f"adapter init_std must be a number > 0, got {self.init_std!r}; e.g. method.init_std=0.02"
            )
        if not isinstance(self.train_norms, bool):
            raise ConfigError(f"adapter train_norms must be true or false, got {self.train_norms!r}")


@dataclasses.dataclass
class HoulsbyAdapterConfig(AdapterConfig):
    """Houlsby et al.'s form: after attention and MLP, GELU, near-identity init, LayerNorms trained."""

    placement: str = "attn_mlp"
    activation: str = "gelu"
    dropout: float = 0.0
    init: str = "trunc_normal"
    init_std: float = 1e-3
    train_norms: bool = True


def apply_sequential_adapters(model: nn.Module, cfg: AdapterConfig, method: str) -> nn.Module:
    """Wrap the sub-layers chosen by ``cfg.placement`` in every block with a sequential adapter.

    Args:
        model: a timm ViT or Swin.
        cfg: the adapter options.
        method: the method's name, for error messages.

    Returns:
        The same model, adapted in place.
    """
    for name, block in adapter_blocks(model, method, needs=PLACEMENTS[cfg.placement]):
        width, like = block_width(block), reference_tensor(block)
        for sub in PLACEMENTS[cfg.placement]:
            bottleneck = Bottleneck(width, cfg.dim, cfg.activation, cfg.dropout, cfg.init, cfg.init_std, like)
            replace_module(model, f"{name}.{sub}", SequentialAdapter(getattr(block, sub), bottleneck))
    return model


class Adapter(PeftMethod[AdapterConfig]):
    """One sequential bottleneck adapter (r = 8) on every block's MLP output, as NOAH's Adapter-8."""

    name = "adapter"
    family = "addition"
    subfamily = "adapter"
    config_cls = AdapterConfig
    backbones = ("vit", "eva", "swin", "convnext")
    notes = {
        "layerscale": "adapter inside the layer scale: ls(h + A(h)) (PETL_Vision's placement on DINOv2)",
        "swiglu": "the adapter reads the SwiGLU MLP's D-wide output",
        "convnext": "one adapter on the output of each block's channels-last MLP (placement: mlp only)",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_sequential_adapters(model, self.config, self.name)

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        seen: set[int] = set()
        norms = layernorm_parameters(model) if self.config.train_norms else []
        for p in [*method_owned_parameters(model), *norms]:
            if id(p) not in seen:
                seen.add(id(p))
                yield p


class HoulsbyAdapter(Adapter):
    """Houlsby et al.'s two adapters per block (after attention and after MLP), LayerNorms trained."""

    name = "adapter_houlsby"
    config_cls = HoulsbyAdapterConfig
