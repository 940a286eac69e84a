"""Costs of a method that mean the same thing on every device: what one training step keeps for backward, what
its optimizer holds, its memory peak, its FLOPs, and batch-1 latency.

* ``saved_activation_mb``: bytes autograd saves for backward during the step's forward, read with autograd's
  saved-tensor hooks; each storage is counted once, and the model's own parameters and buffers (saved by a
  matmul that needs the weight for the input gradient) are not activations and are left out.
* ``train_state_mb``: trainable parameters + their gradients + the optimizer's state tensors, read from the
  optimizer after the step (not estimated).
* ``peak_train_mem_mb``: the most memory the step's tensors held at once, counting what was resident when it
  began (parameters, buffers, gradients, optimizer state) and nothing else (no data caches). On CUDA from the
  caching allocator (its peak during the step above what was allocated before it); elsewhere from a dispatch
  mode that follows every tensor the step creates until it is freed. Neither leaks one method's peak into the
  next measurement, unlike a process's RSS high-water mark.
* FLOPs from :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

MB = 2**20
StorageKey = tuple[int, str]


def storage_key(t: torch.Tensor) -> StorageKey:
    """What identifies a tensor's memory: its storage's address and device (views share it)."""
    return t.untyped_storage().data_ptr(), str(t.device)


def unique_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (None entries skipped)."""
    seen: dict[StorageKey, int] = {}
    for t in tensors:
        if t is not None:
            seen.setdefault(storage_key(t), t.untyped_storage().nbytes())
    return sum(seen.values())


def model_bytes(model: nn.Module) -> int:
    """Parameters and buffers of ``model``."""
    return unique_bytes([*model.parameters(), *model.buffers()])


def optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Every tensor in the optimizer's per-parameter state (moments, step counters)."""
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def train_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Trainable parameters (those the optimizer holds), their gradients and the optimizer state."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return unique_bytes([*params, *(p.grad for p in params), *optimizer_state_tensors(optimizer)])


class LiveTensorPeak(TorchDispatchMode):
    """Follows the tensors created under it (and those handed to :meth:`track`) until they are freed; ``peak`` is
    the most bytes they held at once. Storages that existed before (parameters, inputs) are not counted."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[StorageKey, list[int]] = {}  # key -> [bytes, tensors alive]
        self.current = self.peak = 0

    def track(self, tensors: Iterable[torch.Tensor | None]) -> None:
        """Count existing tensors as live (e.g. last step's gradients, which this step frees)."""
        for t in tensors:
            if t is not None:
                self._add(t)

    def _add(self, t: torch.Tensor) -> None:
        key = storage_key(t)
        entry = self._live.get(key)
        if entry is None:
            entry = self._live[key] = [t.untyped_storage().nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: StorageKey) -> None:
        entry = self._live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.current -= entry[0]
                del self._live[key]

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {storage_key(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.untyped_storage().nbytes() == 0:
                continue
            key = storage_key(t)
            if key in self._live or key not in inputs:  # a new storage, or another view of one it follows
                self._add(t)
        return out


@dataclasses.dataclass
class StepCosts:
    """One training step's memory and FLOPs (see the module docstring)."""

    saved_activation_mb: float
    saved_activation_mb_per_image: float
    train_state_mb: float
    peak_train_mem_mb: float
    peak_train_mem_source: str
    train_step_gflops: float  # per image, forward + backward of the step the trainer runs


class StepProbe:
    """Measures the one training step run inside :meth:`measure` (its numbers are unchanged: the hooks only look).

    Usage::

        probe = StepProbe(model, optimizer, device)
        with probe.measure(batch_size):
            ...forward, loss, zero_grad, backward, optimizer.step()...
        probe.costs  # StepCosts
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.costs: StepCosts | None = None

    @contextlib.contextmanager
    def measure(self, batch_size: int) -> Iterator[None]:
        exclude = {storage_key(t) for t in [*self.model.parameters(), *self.model.buffers()]}
        saved: dict[StorageKey, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = storage_key(t)
            if key not in exclude:
                saved.setdefault(key, t.untyped_storage().nbytes())
            return t

        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grads = [p.grad for p in params]
        # what the step starts from and keeps: the model and the optimizer state (gradients apart: a step frees
        # last step's gradients and allocates new ones)
        kept = unique_bytes([*self.model.parameters(), *self.model.buffers(), *optimizer_state_tensors(self.optimizer)])
        flops = FlopCounterMode(display=False)
        cuda = self.device.type == "cuda"
        live = LiveTensorPeak()  # entered off CUDA only
        old_grads = unique_bytes(grads)
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
        else:
            live.track(grads)  # freed by the step's zero_grad: the tracker sees them go
        del grads
        with flops, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with contextlib.nullcontext() if cuda else live:
                yield
        if cuda:
            torch.cuda.synchronize(self.device)
            # the allocator's peak above what was allocated when the step began, plus what of that was the model's
            peak = kept + old_grads + torch.cuda.max_memory_allocated(self.device) - before
            source = "cuda allocator: model + optimizer state + one training step's peak above them (no data caches)"
        else:
            peak = kept + live.peak  # the tracker followed last step's gradients too, until the step freed them
            source = "model + optimizer state + one training step's live tensors at their peak (no data caches)"
        self.costs = StepCosts(
            saved_activation_mb=sum(saved.values()) / MB,
            saved_activation_mb_per_image=sum(saved.values()) / MB / batch_size,
            train_state_mb=train_state_bytes(self.optimizer) / MB,
            peak_train_mem_mb=peak / MB,
            peak_train_mem_source=source,
            train_step_gflops=flops.get_total_flops() / 1e9 / batch_size,
        )


def forward_gflops(model: nn.Module, x: torch.Tensor) -> float:
    """GFLOPs per image of one eval-mode forward pass of ``model`` on ``x``."""
    model.eval()
    # grad mode on: the counter's module tracker hooks tensors that require grad, which inference mode refuses
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9 / x.shape[0]


def latency_ms(model: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype | None,
               warmup: int = 2, iters: int = 10, sync: Callable[[torch.device], None] | None = None) -> float:
    """Median milliseconds of one eval-mode forward pass on ``x`` (batch 1 for latency)."""
    model.eval()
    x = x.to(device)
    times = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for i in range(warmup + iters):
            if sync is not None:
                sync(device)
            t0 = time.perf_counter()
            model(x)
            if sync is not None:
                sync(device)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
