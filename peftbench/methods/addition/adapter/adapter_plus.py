"""Adapter+: a post-block bottleneck adapter with a learned channel-wise scaling.

Paper: Steitz & Roth (CVPR 2024), "Adapters Strike Back". Reference implementation followed: visinf/adapter_plus
@ 191c4ab ``adapter_plus/vit_adapter.py`` (``Adapter``, ``AdapterBlock.forward_post``) with the configuration
``conf/adapter/adapter_plus.yaml`` over ``conf/adapter/base_adapter.yaml`` (the paper's final VTAB choice):

* placement ``post``: after the block's MLP residual add, ``y = block(x)``, output ``y + s * A(y)``;
* ``A`` = ``up(dropout(gelu(down(y))))``, down D -> r and up r -> D with biases, no LayerNorm
  (``norm_layer: false``), dropout 0, r = 8 (``dim: 8``);
* ``s``: a learned channel-wise scaling, one value per channel initialised to 1 (``scaling: channel``);
* init ``houlsby``: both projections N(0, 0.01^2) truncated at 2 sigma, both biases zero (a near-identity
  adapter, not an exact one);
* stochastic depth on the adapter branch, ``drop_path: 0.1`` (besides the ViT's own drop-path 0.1 of the recipe).

``dim: auto`` uses the per-task r of ``conf/experiment/{vtab,fgvc}/adapter_plus_dim1-32.yaml`` (the paper's
"Adapter+ opt.", r chosen per task on the validation split; :data:`VTAB1K_DIMS`, :data:`FGVC_DIMS`); the
training entry point fills ``task`` from ``dataset.name``. Recipe of the reference (``conf/config.yaml``, ``conf/train/``): AdamW lr 1e-3,
wd 1e-4 (none on biases and scalings), batch 64, 100 epochs, 10 linear warm-up epochs from lr/100, cosine to
lr/1000, ViT drop-path 0.1, test accuracy after the last epoch, mean of seeds 18, 45, 25.

Count on ViT-B/16 without head, r = 8: 12 x (768*8 + 8 + 8*768 + 768 + 768) = 165,984. The paper's Fig. 1
(``assets/params_accuracy.png``) puts Adapter+ r = 8 at 0.20M: it counts the head averaged over the 19 VTAB-1k
tasks (its linear-probing line sits at 0.04M; ``get_results.ipynb`` averages the runs' trainable parameters),
165,984 + 940 x 769 / 19 = 204,029. The per-task r of ``dim: auto`` give 0.27M the same way ("Adapter+ opt.").

Structure (wrap, never patch): each block becomes a :class:`PostAdapterBlock` whose frozen ``base_layer`` is the
original block. Works on Swin (``SwinTransformerBlock`` has the same residual stream; the adapter is
token-wise, on the ``(B, H, W, C)`` output); the paper and the reference code cover ViTs only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import replace_module
from peftbench.methods.layers.bottleneck import Bottleneck, adapter_blocks, block_width, reference_tensor
from peftbench.methods.layers.checks import check_dropout, check_positive_int

AUTO = "auto"
HOULSBY_STD = 0.01  # the paper's value (Houlsby et al.'s code uses 0.001)

# Per-task r of "Adapter+ opt." (visinf/adapter_plus @ 191c4ab conf/experiment/{vtab,fgvc}/adapter_plus_dim1-32.yaml,
# ``dataset_dim``), keyed by peftbench's VTAB-1k and FGVC dataset names.
VTAB1K_DIMS: dict[str, int] = {
    "cifar": 1, "caltech101": 4, "dtd": 2, "oxford_flowers102": 1, "oxford_iiit_pet": 8, "svhn": 16, "sun397": 1,
    "patch_camelyon": 16, "eurosat": 2, "resisc45": 32, "diabetic_retinopathy": 32, "clevr_count": 4,
    "clevr_dist": 8, "dmlab": 8, "kitti": 8, "dsprites_loc": 32, "dsprites_ori": 4, "smallnorb_azi": 32,
    "smallnorb_ele": 8,
}  # fmt: skip
FGVC_DIMS: dict[str, int] = {"cub": 2, "nabirds": 2, "oxford_flowers": 1, "stanford_dogs": 1, "stanford_cars": 32}


@dataclasses.dataclass
class AdapterPlusConfig(MethodConfig):
    """Adapter+ options; defaults are the paper's VTAB-1k configuration without per-task tuning (r = 8).

    Attributes:
        dim: r, the bottleneck width, or ``"auto"``: look ``task`` up in ``dims_per_task``.
        dropout: dropout after the GELU (training only).
        drop_path: stochastic depth on the adapter branch (training only).
        dims_per_task: task name -> r, used by ``dim: auto``.
        task: the dataset name (peftbench's ``dataset.name``) that ``auto`` looks up.
    """

    dim: int | str = 8
    dropout: float = 0.0
    drop_path: float = 0.1
    dims_per_task: dict[str, int] = dataclasses.field(default_factory=lambda: {**VTAB1K_DIMS, **FGVC_DIMS})
    task: str | None = None

    def __post_init__(self) -> None:
        if self.dim != AUTO:
            check_positive_int("adapter_plus", "dim", self.dim)
        check_dropout("adapter_plus", self.dropout)
        if isinstance(self.drop_path, bool) or not isinstance(self.drop_path, (int, float)) or not (
            0.0 <= self.drop_path < 1.0
        ):
            raise ConfigError(
                f"adapter_plus drop_path must be in [0, 1), got {self.drop_path!r}; the paper uses "
                "method.drop_path=0.1"
            )
        for task, r in dict(self.dims_per_task).items():
            check_positive_int("adapter_plus", f"dims_per_task.{task}", r)
        if self.task is not None and not isinstance(self.task, str):
            raise ConfigError(f"adapter_plus task must be a dataset name or null, got {self.task!r}")

    def resolved_dim(self) -> int:
        """r, with ``auto`` looked up for ``task``."""
        if self.dim != AUTO:
            return int(self.dim)
        known = ", ".join(sorted(self.dims_per_task)) or "(none)"
        if self.task is None:
            raise ConfigError(
                "adapter_plus dim=auto needs the task name: set method.task=<dataset name> (the training entry "
                f"point fills it from dataset.name) or a fixed method.dim; tasks with a preset: {known}"
            )
        if self.task not in self.dims_per_task:
            raise ConfigError(
                f"adapter_plus dim=auto has no preset for task {self.task!r}; tasks with a preset: {known}. "
                f"Add one with method.dims_per_task.{self.task}=<r> or set a fixed method.dim"
            )
        return int(self.dims_per_task[self.task])


class PostAdapterBlock(PeftModule):
    """``y + drop_path(A(y)) * s`` with ``y = base_layer(x, ...)``: the adapter after the whole block.

    Args:
        base_layer: the frozen transformer block.
        adapter: ``A``, token-wise D -> r -> D.
        width: D, the length of the channel-wise scaling ``s`` (initialised to ones).
        drop_path: stochastic-depth rate of the adapter branch.
        like: a backbone tensor whose dtype and device ``s`` takes.
    """

    def __init__(
        self, base_layer: nn.Module, adapter: nn.Module, width: int, drop_path: float, like: torch.Tensor
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter
        self.scaling = nn.Parameter(torch.ones(width, dtype=like.dtype, device=like.device))  # (D,)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)  # ViT (B, N, D); Swin (B, H, W, D)
        return y + self.drop_path(self.adapter(y)) * self.scaling


def apply_adapter_plus(model: nn.Module, cfg: AdapterPlusConfig, method: str = "adapter_plus") -> nn.Module:
    """Put an Adapter+ after every transformer block.

    Args:
        model: a timm ViT or Swin.
        cfg: the Adapter+ options (``dim: auto`` needs ``cfg.task``).
        method: the method's name, for error messages.

    Returns:
        The same model, adapted in place.
    """
    dim = cfg.resolved_dim()
    for name, block in adapter_blocks(model, method):
        width, like = block_width(block), reference_tensor(block)
        adapter = Bottleneck(width, dim, "gelu", cfg.dropout, "trunc_normal", HOULSBY_STD, like)
        replace_module(model, name, PostAdapterBlock(block, adapter, width, cfg.drop_path, like))
    return model


class AdapterPlus(PeftMethod[AdapterPlusConfig]):
    """Adapter+: a post-block adapter (r = 8) with channel-wise scaling and drop-path 0.1 in every block."""

    name = "adapter_plus"
    family = "addition"
    subfamily = "adapter"
    config_cls = AdapterPlusConfig
    backbones = ("vit", "swin")

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_adapter_plus(model, self.config, self.name)
