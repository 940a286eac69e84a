"""Hydra: a parallel and a sequential low-rank branch on the attention output and MLP output projections.

Paper: Kim, Yang, Kim, Hong, Park (2023), "Hydra: Multi-head Low-rank Adaptation for Parameter Efficient
Fine-tuning" (arXiv:2309.06922). Reference implementation followed: extremebird/Hydra @ 4138457
``vtab1k/hydra.py`` (``Hydra_layer``, ``forward_vit_hydra_attn``, ``forward_vit_hydra_ffn``, ``set_hydra``
with ``method='hydra_both'``, ``reparameterize``) and ``vtab1k/train.py`` / ``vtab1k/configs/hydra_both/<task>.yaml``:

* a frozen Linear ``W0`` (``attn.proj`` and ``mlp.fc2`` of every block) computes
  ``y = W0 x + b0 + s * [P(x) + S(W0 x + b0)]``: the parallel branch ``P`` reads the layer's input, the
  sequential branch ``S`` its output; each branch is ``up(dropout(down(.)))``, linear (no activation), with
  biases, down ``in -> r``, up ``r -> out``, r = 2 (``train_hydra.sh``: ``dim=2``);
* init: down xavier-uniform, up zero, every bias zero, so the model is the backbone at init;
* both branches are linear in ``x``, so after training the layer folds into one Linear
  (``reparameterize``): ``W = W0 + s (Wp + Ws W0)``, ``b = b0 + s (bp + Ws b0 + bs)`` with
  ``Wp = Up_p Dn_p``, ``bp = Up_p bd_p + bu_p`` and likewise for ``S``. The merged backbone is a plain timm model;
* s and the dropout are per task in the reference (``configs/hydra_both/<task>.yaml``: s in 0.1 ... 4.5,
  dropout 0, 0.1 or 0.2; :data:`VTAB1K_SCALE`, :data:`VTAB1K_DROPOUT`). The defaults here are ``Hydra_layer``'s own
  (s = 1, which is also the median of the 19 per-task values, dropout 0); ``scale: auto`` / ``dropout: auto``
  look the task up (the training entry point fills ``task`` from ``dataset.name``).

Count on ViT-B/16 without head, r = 2: 12 x [3 (2*768 + 2 + 768) + (3072*2 + 2 + 2*768 + 768)] = 239,712.
The Hydra README table and V-PETL Bench print 0.28M: they count the head averaged over the 19 VTAB-1k tasks
(940 classes x 769 / 19 = 38,045; their linear probe is 0.04M), 239,712 + 38,045 = 277,757.

Works on Swin: the method is local to a Linear, and timm's ``SwinTransformerBlock`` has the same
``attn.proj`` and ``mlp.fc2`` Linears (no published Swin setting). Deviation: the reference's own merge
(``set_hydraWeight``) reads ``mlp.fc2``'s weight when merging the attention branch (a bug, not reproduced).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import replace_module
from peftbench.methods.layers.bottleneck import init_projections
from peftbench.methods.layers.checks import check_dropout, check_positive_int, is_positive_number
from peftbench.methods.layers.mergeable import MergeableLinear, block_linears, merge_linear_wrappers

AUTO = "auto"
SITES = ("attn.proj", "mlp.fc2")  # 'hydra_both': the attention output projection and the MLP's second Linear

# Per-task s and dropout of the reference VTAB-1k runs (extremebird/Hydra @ 4138457
# vtab1k/configs/hydra_both/<task>.yaml: ``scale``, ``dropout``), keyed by peftbench's VTAB-1k dataset names.
VTAB1K_SCALE: dict[str, float] = {
    "cifar": 0.1, "caltech101": 4.0, "dtd": 0.1, "oxford_flowers102": 0.1, "oxford_iiit_pet": 0.1, "svhn": 3.0,
    "sun397": 0.1, "patch_camelyon": 0.1, "eurosat": 0.1, "resisc45": 0.1, "diabetic_retinopathy": 4.5,
    "clevr_count": 1.5, "clevr_dist": 0.1, "dmlab": 4.5, "kitti": 4.5, "dsprites_loc": 4.5, "dsprites_ori": 2.5,
    "smallnorb_azi": 3.0, "smallnorb_ele": 1.0,
}  # fmt: skip
VTAB1K_DROPOUT: dict[str, float] = {
    "cifar": 0.2, "caltech101": 0.1, "dtd": 0.2, "oxford_flowers102": 0.0, "oxford_iiit_pet": 0.0, "svhn": 0.0,
    "sun397": 0.2, "patch_camelyon": 0.2, "eurosat": 0.2, "resisc45": 0.2, "diabetic_retinopathy": 0.2,
    "clevr_count": 0.2, "clevr_dist": 0.0, "dmlab": 0.2, "kitti": 0.2, "dsprites_loc": 0.2, "dsprites_ori": 0.2,
    "smallnorb_azi": 0.2, "smallnorb_ele": 0.2,
}  # fmt: skip


@dataclasses.dataclass
class HydraConfig(MethodConfig):
    """Hydra options; defaults are the reference's r = 2 with ``Hydra_layer``'s s = 1 and dropout 0.

    Attributes:
        dim: r, the rank of each branch.
        scale: s, or ``"auto"``: look ``task`` up in ``scale_per_task``.
        dropout: dropout between down and up (training only), or ``"auto"``: look ``task`` up.
        scale_per_task: task name -> s, used by ``scale: auto``.
        dropout_per_task: task name -> dropout, used by ``dropout: auto``.
        task: the dataset name (peftbench's ``dataset.name``) that ``auto`` looks up.
    """

    dim: int = 2
    scale: float | str = 1.0
    dropout: float | str = 0.0
    scale_per_task: dict[str, float] = dataclasses.field(default_factory=lambda: dict(VTAB1K_SCALE))
    dropout_per_task: dict[str, float] = dataclasses.field(default_factory=lambda: dict(VTAB1K_DROPOUT))
    task: str | None = None

    def __post_init__(self) -> None:
        check_positive_int("hydra", "dim", self.dim)
        if self.scale != AUTO and not is_positive_number(self.scale):
            raise ConfigError(
                f"hydra scale must be a number > 0 or 'auto' (per-task preset), got {self.scale!r}; "
                "e.g. method.scale=0.1 or method.scale=auto"
            )
        if self.dropout != AUTO:
            check_dropout("hydra", self.dropout)
        for task, s in dict(self.scale_per_task).items():
            if not is_positive_number(s):
                raise ConfigError(f"hydra scale_per_task[{task!r}] must be a number > 0, got {s!r}")
        for task, p in dict(self.dropout_per_task).items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ConfigError(f"hydra dropout_per_task[{task!r}] must be in [0, 1), got {p!r}")
        if self.task is not None and not isinstance(self.task, str):
            raise ConfigError(f"hydra task must be a dataset name or null, got {self.task!r}")

    def resolved(self) -> tuple[float, float]:
        """The ``(scale, dropout)`` to use, ``auto`` values looked up for ``task``."""
        scale = self._lookup("scale", self.scale_per_task) if self.scale == AUTO else self.scale
        dropout = self._lookup("dropout", self.dropout_per_task) if self.dropout == AUTO else self.dropout
        return float(scale), float(dropout)

    def _lookup(self, option: str, presets: dict[str, float]) -> float:
        known = ", ".join(sorted(presets)) or "(none)"
        if self.task is None:
            raise ConfigError(
                f"hydra {option}=auto needs the task name: set method.task=<dataset name> (the training entry "
                f"point fills it from dataset.name) or a fixed method.{option}; tasks with a preset: {known}"
            )
        if self.task not in presets:
            raise ConfigError(
                f"hydra {option}=auto has no preset for task {self.task!r}; tasks with a preset: {known}. "
                f"Add one with method.{option}_per_task.{self.task}=<value> or set a fixed method.{option}"
            )
        return float(presets[self.task])


class HydraLinear(MergeableLinear):
    """``y = base(x) + s * [par_up(drop(par_down(x))) + seq_up(drop(seq_down(base(x))))]``.

    Args:
        base_layer: the frozen Linear ``W0`` (in -> out).
        rank: r of both branches.
        scale: s.
        dropout: dropout on the rank-r hidden of both branches.
    """

    def __init__(self, base_layer: nn.Linear, rank: int, scale: float, dropout: float) -> None:
        super().__init__(base_layer)
        w = base_layer.weight
        factory = {"dtype": w.dtype, "device": w.device}
        fan_in, fan_out = base_layer.in_features, base_layer.out_features
        self.par_down = nn.Linear(fan_in, rank, **factory)  # parallel: reads the layer's input
        self.par_up = nn.Linear(rank, fan_out, **factory)
        self.seq_down = nn.Linear(fan_out, rank, **factory)  # sequential: reads the layer's output
        self.seq_up = nn.Linear(rank, fan_out, **factory)
        init_projections(self.par_down, self.par_up, "xavier_zero", 0.0)
        init_projections(self.seq_down, self.seq_up, "xavier_zero", 0.0)
        self.dropout = nn.Dropout(dropout)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)  # (..., out)
        par = self.par_up(self.dropout(self.par_down(x)))  # (..., out)
        seq = self.seq_up(self.dropout(self.seq_down(h)))  # (..., out)
        return h + self.scale * (par + seq)

    def delta_weight(self) -> torch.Tensor:
        w0 = self.base_layer.weight  # (out, in)
        parallel = self.par_up.weight @ self.par_down.weight  # (out, in)
        sequential = self.seq_up.weight @ self.seq_down.weight @ w0  # (out, out) @ (out, in)
        return self.scale * (parallel + sequential)

    def delta_bias(self) -> torch.Tensor:
        b0 = self.base_layer.bias
        parallel = self.par_up(self.par_down.bias)  # Up_p bd_p + bu_p, (out,)
        seq_in = self.seq_down.bias if b0 is None else self.seq_down(b0)  # Dn_s b0 + bd_s, (r,)
        return self.scale * (parallel + self.seq_up(seq_in))


def apply_hydra(model: nn.Module, cfg: HydraConfig) -> nn.Module:
    """Wrap ``attn.proj`` and ``mlp.fc2`` of every transformer block with :class:`HydraLinear`.

    Args:
        model: a timm ViT or Swin.
        cfg: the Hydra options (``auto`` values need ``cfg.task``).

    Returns:
        The same model, adapted in place.
    """
    scale, dropout = cfg.resolved()
    for site in SITES:
        for name, linear in block_linears(model, site):
            replace_module(model, name, HydraLinear(linear, cfg.dim, scale, dropout))
    return model


class Hydra(PeftMethod[HydraConfig]):
    """Hydra: parallel + sequential rank-2 branches on ``attn.proj`` and ``mlp.fc2``, merged after training."""

    name = "hydra"
    family = "partial"
    subfamily = "reparameter"
    config_cls = HydraConfig
    mergeable = True
    backbones = ("vit", "swin")

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_hydra(model, self.config)

    def merge(self, model: nn.Module) -> nn.Module:
        return merge_linear_wrappers(model)
