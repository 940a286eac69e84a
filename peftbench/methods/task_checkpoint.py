"""What a run trained (the method's tensors and the head) as a safetensors file, and loading it back.

Besides the trainable parameters, the file holds the method's persistent buffers (:func:`method_owned_buffers`,
e.g. BatchNorm statistics of a side network): state the run learned without gradients.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from peftbench.atomic import atomic_path
from peftbench.errors import CheckpointError
from peftbench.methods.base import method_owned_buffers


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the tensors the method trained (and the head) and its own buffers, detached, contiguous, on CPU."""
    state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b.detach().cpu().contiguous() for n, b in method_owned_buffers(model).items()})
    return state


def save_task_checkpoint(model: nn.Module, path: str | Path) -> int:
    """Save the trained tensors as safetensors; return the file size in bytes."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(trainable_state_dict(model), str(tmp))
    return Path(path).stat().st_size


def load_task_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a task checkpoint saved by :func:`save_task_checkpoint` into a prepared model.

    Every tensor in the file must match a parameter or a method buffer of the model, and every trainable
    parameter and method buffer of the model must be in the file.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"task checkpoint {path} does not exist")
    try:
        state = load_file(str(path))
    except Exception as exc:  # not a safetensors file, truncated, ...: the library raises several types
        raise CheckpointError(f"cannot read task checkpoint {path}: {exc}") from None
    buffers = method_owned_buffers(model)
    params: dict[str, torch.Tensor] = {**dict(model.named_parameters()), **buffers}
    unexpected = sorted(set(state) - set(params))
    missing = sorted(n for n, p in params.items() if (n in buffers or p.requires_grad) and n not in state)
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
