"""Optimizers and the warmup + cosine learning-rate schedule of the common VTAB-1k recipe."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from peftbench.errors import ConfigError

OPTIMIZERS = ("adamw", "sgd")


@dataclasses.dataclass
class OptimConfig:
    """The ``optim:`` group. Learning rate and weight decay live in ``trainer:`` (``trainer.lr``)."""

    name: str = "adamw"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    no_decay_1d: bool = False  # exclude biases / norm / 1-D params from weight decay

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.name!r}; valid choices: {', '.join(OPTIMIZERS)} (optim=<name>)")
        self.betas = tuple(self.betas)  # type: ignore[assignment]


def build_optimizer(
    params: list[nn.Parameter], cfg: OptimConfig, lr: float, weight_decay: float, fused: bool = False
) -> torch.optim.Optimizer:
    """Build the optimizer over exactly ``params`` (the trainable ones).

    Args:
        params: trainable parameters; nothing else ever reaches the optimizer.
        cfg: optimizer config.
        lr: peak learning rate.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        fused: use the fused CUDA AdamW kernel.
    """
    if cfg.no_decay_1d:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
    else:
        groups = [{"params": params, "weight_decay": weight_decay}]
    if cfg.name == "adamw":
        kwargs = {"fused": True} if fused else {}
        return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas, eps=cfg.eps, **kwargs)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def use_fused_adamw(device: torch.device, cfg: OptimConfig) -> bool:
    """The fused AdamW kernel runs on CUDA only; CPU keeps the reference (for-each) implementation."""
    return device.type == "cuda" and cfg.name == "adamw"


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, warmup_lr: float, min_lr: float) -> float:
    """Linear warmup from ``warmup_lr`` to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr``."""
    if step < warmup_steps:
        return warmup_lr + (lr - warmup_lr) * step / max(warmup_steps, 1)
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0)))
