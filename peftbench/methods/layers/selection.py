"""Modules whose behaviour depends on a selection made on the training data, and how a selection is kept.

A :class:`SelectionModule` holds its selection in index buffers of a fixed shape (SCT: the K channels of a
block; GPS: the K input connections of every output neuron). ``apply`` fills them with a placeholder (the
first indices) so a model can be built, counted and timed without data; the method's ``prepare`` overwrites
them from the training split. :func:`selection_state` / :func:`load_selection` move every selection of a
model to and from a flat tensor dict (the run folder's ``selection.safetensors``), so a resumed run trains on
exactly the selection it started with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from peftbench.errors import CheckpointError
from peftbench.methods.base import PeftModule


class SelectionModule(PeftModule):
    """A method module that reads a data-dependent selection from the buffers named in ``selection_buffers``.

    ``selected`` is False while the buffers hold the placeholder of ``apply`` and True once a selection was
    computed or loaded.
    """

    selection_buffers: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.selected = False


def selection_modules(model: nn.Module) -> list[tuple[str, SelectionModule]]:
    """Every :class:`SelectionModule` of ``model`` with its qualified name, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SelectionModule)]


def selection_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The selection of every :class:`SelectionModule`: ``{"<module>.<buffer>": tensor}`` (CPU, contiguous)."""
    return {
        f"{name}.{buf}": getattr(module, buf).detach().cpu().contiguous()
        for name, module in selection_modules(model)
        for buf in module.selection_buffers
    }


def load_selection(model: nn.Module, state: dict[str, torch.Tensor], source: str = "the selection") -> None:
    """Copy a :func:`selection_state` back into ``model`` (names and shapes must match exactly).

    Raises:
        CheckpointError: the state was made for another model or method configuration.
    """
    expected = selection_state(model)
    if set(state) != set(expected):
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise CheckpointError(
            f"{source} does not fit this model+method: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}"
            )
    for name, module in selection_modules(model):
        with torch.no_grad():
            for buf in module.selection_buffers:
                target = getattr(module, buf)
                target.copy_(state[f"{name}.{buf}"].to(target.device, target.dtype))
        module.selected = True


def batches(data: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = False,
            drop_last: bool = False, generator: torch.Generator | None = None) -> Iterator[tuple]:
    """Batches of ``data`` for a selection pass (a plain ``DataLoader``; one pass)."""
    loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                        num_workers=num_workers, generator=generator)
    yield from loader


def top_k_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the ``k`` largest entries along the last dimension, in ascending index order.

    Ties are broken towards the lower index (a stable sort), so a selection is reproducible.

    Args:
        scores: ``(..., n)``.
        k: how many to keep (``1 <= k <= n``).

    Returns:
        ``(..., k)`` int64 indices, sorted ascending.
    """
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    return order.sort(dim=-1).values
