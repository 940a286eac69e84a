"""Put a method on a backbone, freeze everything else, count, save and reload the task checkpoint.

This is the single place where trainability is set (see :mod:`peftbench.methods.base`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from peftbench.errors import CheckpointError
from peftbench.methods.base import PeftMethod, count, head_parameters


@dataclasses.dataclass
class ParamCounts:
    """Parameter counts of a prepared model.

    ``backbone_params`` counts the pretrained backbone without its head (before the method was
    applied); ``trainable_percent`` is ``trainable_params_without_head / backbone_params * 100``,
    the convention of the VTAB-1k tables.
    """

    trainable_params: int
    trainable_params_without_head: int
    head_params: int
    total_params: int
    backbone_params: int
    trainable_percent: float

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def backbone_param_count(model: nn.Module) -> int:
    """Parameters of a plain backbone, the classification head excluded."""
    head = {id(p) for p in head_parameters(model)}
    return count([p for p in model.parameters() if id(p) not in head])


def prepare_model(model: nn.Module, method: PeftMethod, train_head: bool = True) -> ParamCounts:
    """Apply ``method`` to ``model`` in place and set ``requires_grad`` accordingly.

    Args:
        model: a timm backbone with its task head already sized.
        method: the PEFT method to apply.
        train_head: the harness's head policy (True for every method in the tables).

    Returns:
        The parameter counts of the prepared model.
    """
    base_count = backbone_param_count(model)
    method.check_backbone(model)
    method.apply(model)
    model.requires_grad_(False)
    method_params = list(method.trainable_parameters(model))
    head = head_parameters(model) if train_head else []
    for p in method_params + head:
        p.requires_grad_(True)
    head_ids = {id(p) for p in head}
    without_head = count([p for p in method_params if id(p) not in head_ids])
    trainable = count([p for p in model.parameters() if p.requires_grad])
    return ParamCounts(
        trainable_params=trainable,
        trainable_params_without_head=without_head,
        head_params=count(head),
        total_params=count(list(model.parameters())),
        backbone_params=base_count,
        trainable_percent=100.0 * without_head / max(base_count, 1),
    )


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the tensors the method trained (and the head), detached, contiguous, on CPU."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_task_checkpoint(model: nn.Module, path: str | Path) -> int:
    """Save the trained tensors as safetensors; return the file size in bytes."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(trainable_state_dict(model), str(tmp))
    tmp.replace(path)
    return path.stat().st_size


def load_task_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a task checkpoint saved by :func:`save_task_checkpoint` into a prepared model.

    Every tensor in the file must match a parameter of the model, and every trainable parameter of
    the model must be in the file.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"task checkpoint {path} does not exist")
    state = load_file(str(path))
    params = dict(model.named_parameters())
    unexpected = sorted(set(state) - set(params))
    missing = sorted(n for n, p in params.items() if p.requires_grad and n not in state)
    if unexpected or missing:
        raise CheckpointError(
            f"task checkpoint {path} does not fit this model+method: "
            f"unexpected keys {unexpected[:10]}, missing keys {missing[:10]}"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            if params[name].shape != tensor.shape:
                raise CheckpointError(
                    f"task checkpoint {path}: {name} has shape {tuple(tensor.shape)}, "
                    f"model expects {tuple(params[name].shape)}"
                )
            params[name].copy_(tensor)
