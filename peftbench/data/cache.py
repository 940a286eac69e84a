"""Decoded-image cache: decode and resize a split once, keep uint8 pixels, normalise on the fly.

VTAB-1k (and the embedded tasks) apply no augmentation: every epoch decodes the same PNGs and resizes
them to the same pixels. When a split's transform is deterministic up to ``ToTensor`` (only ``Resize`` /
``CenterCrop`` before it, only ``Normalize`` after it), the pixels after the resize are decoded once into a
``(N, 3, S, S)`` uint8 tensor (4x smaller than float32), kept on the training device when they fit (pinned
host memory on CUDA otherwise), and every batch is normalised on the device with the same float32
arithmetic as ``ToTensor`` + ``Normalize``, so cached and uncached batches are bitwise equal.

Within one process (a Hydra multirun runs its jobs in one), the decoded pixels of a split are kept for the
next run that reads the same files with the same resize (keyed by the base folder, every entry's path and
label, each file's size and modification time, and the resize steps), up to ``REUSE_BYTES`` in all, least
recently used first out: a sweep of many methods over the same tasks decodes each task once. The reused
tensors are never written to (batches are gathered copies).

Batches come in the order a single-process ``DataLoader(shuffle=True, generator=g)`` over the split gives (a
loader with persistent workers draws its worker seed once, not every epoch, so its order differs): an
index ``DataLoader`` with the same generator draws the permutation, so shuffling, resume and the random
streams of the run are unchanged. Splits with random transforms (FGVC training) keep the ordinary
``DataLoader`` with worker processes, persistent workers and prefetching.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from peftbench.data.readers import ImageListDataset

_DETERMINISTIC_PIL = (T.Resize, T.CenterCrop)
_MEM_FRACTION = 0.5  # at most this share of the free device / available host memory goes to a cache
REUSE_BYTES = 512 * 2**20  # decoded host pixels kept across the runs of one process (see the module docstring)
_REUSED: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()


@dataclasses.dataclass
class CacheDecision:
    """Whether a split was cached, and why (recorded in the result JSON)."""

    enabled: bool
    reason: str
    placement: str = ""  # device | pinned | cpu
    nbytes: int = 0
    build_seconds: float = 0.0
    reused: bool = False  # the pixels came from an earlier run's decoding in this process

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _split_transform(transform: Any) -> tuple[list[Any], T.Normalize | None] | None:
    """``(PIL steps before ToTensor, Normalize or None)`` when ``transform`` is deterministic, else None."""
    if not isinstance(transform, T.Compose):
        return None
    steps = list(transform.transforms)
    kinds = [type(s) for s in steps]
    if T.ToTensor not in kinds:
        return None
    cut = kinds.index(T.ToTensor)
    before, after = steps[:cut], steps[cut + 1 :]
    if not all(isinstance(s, _DETERMINISTIC_PIL) for s in before):
        return None
    last = before[-1] if before else None
    fixed = isinstance(last, T.CenterCrop) or (isinstance(last, T.Resize) and not isinstance(last.size, int)
                                                and len(last.size) == 2)
    if not fixed:  # images of different sizes cannot share one tensor
        return None
    if len(after) > 1 or (after and type(after[0]) is not T.Normalize):
        return None
    return before, (after[0] if after else None)


def is_cacheable(data: Dataset) -> bool:
    """True when ``data`` is an image-list split whose transform has no randomness (see module docstring)."""
    return isinstance(data, ImageListDataset) and _split_transform(data.transform) is not None


class DecodedImageDataset(Dataset):
    """A split held as resized uint8 pixels ``(N, 3, S, S)``; items are normalised like the original split."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor | None,
                 std: torch.Tensor | None) -> None:
        self.images, self.labels = images, labels  # (N, 3, S, S) uint8, (N,) int64
        self.mean, self.std = mean, std  # (3,) float32 or None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., 3, S, S)`` -> float32, exactly as ``ToTensor`` then ``Normalize`` compute it."""
        x = pixels.to(torch.float32).div(255)
        if self.mean is not None and self.std is not None:
            mean = self.mean.to(x.device).view(-1, 1, 1)
            std = self.std.to(x.device).view(-1, 1, 1)
            x = x.sub_(mean).div_(std)
        return x

    def batch(self, indices: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images ``(B, 3, S, S)`` and labels ``(B,)`` on ``device`` for the given indices."""
        index = indices.to(self.images.device)
        pixels = self.images.index_select(0, index).to(device, non_blocking=True)
        labels = self.labels.index_select(0, index.to(self.labels.device)).to(device, non_blocking=True)
        return self.normalize(pixels), labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.normalize(self.images[index]).cpu(), int(self.labels[index])  # (3, S, S) float32

    def to(self, device: torch.device) -> DecodedImageDataset:
        """The same pixels on ``device`` (``pinned`` host memory is kept by passing a CPU device)."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return DecodedImageDataset(self.images.to(device), self.labels.to(device), move(self.mean), move(self.std))


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62  # unknown: assume it fits


def decode_split(data: ImageListDataset, device: torch.device, num_workers: int = 0) -> tuple[
        DecodedImageDataset | None, CacheDecision]:
    """Decode and resize every image of ``data`` once.

    Args:
        data: a split whose transform is deterministic (see :func:`is_cacheable`).
        device: the training device; pixels go there when they fit, else pinned host memory (CUDA).
        num_workers: processes that decode in parallel.

    Returns:
        The cached split (None when it would not fit) and the decision.
    """
    split = _split_transform(data.transform)
    if split is None:
        return None, CacheDecision(False, "the split's transform is random (augmentation): decoded every epoch")
    before, norm = split
    t0 = time.perf_counter()
    key = _reuse_key(data, before)
    kept = _REUSED.get(key) if key is not None else None
    if kept is not None:
        _REUSED.move_to_end(key)
        images, labels = kept
        nbytes = images.numel()
    else:
        raw = ImageListDataset(data.base, data.entries, T.Compose([*before, T.PILToTensor()]))
        size = raw[0][0].shape
        nbytes = len(raw) * int(torch.Size(size).numel())
        budget = int(_MEM_FRACTION * free_bytes(torch.device("cpu")))
        if nbytes > budget:
            return None, CacheDecision(False, f"{nbytes / 2**20:.0f} MiB of pixels exceed the host memory budget "
                                              f"({budget / 2**20:.0f} MiB)", nbytes=nbytes)
        # A private generator: decoding must not consume the run's random streams.
        loader = DataLoader(raw, batch_size=64, shuffle=False, num_workers=num_workers, generator=torch.Generator())
        images = torch.empty((len(raw), *size), dtype=torch.uint8)
        labels = torch.empty(len(raw), dtype=torch.int64)
        start = 0
        for pixels, target in loader:
            images[start : start + len(target)] = pixels
            labels[start : start + len(target)] = target
            start += len(target)
        if key is not None:
            _keep(key, images, labels)
    mean = torch.as_tensor(norm.mean, dtype=torch.float32) if norm is not None else None
    std = torch.as_tensor(norm.std, dtype=torch.float32) if norm is not None else None
    cached = DecodedImageDataset(images, labels, mean, std)
    placement = "cpu"
    if device.type == "cuda":
        if nbytes < _MEM_FRACTION * free_bytes(device):
            cached, placement = cached.to(device), "device"
        else:
            cached = DecodedImageDataset(images.pin_memory(), labels.pin_memory(), mean, std)
            placement = "pinned"
    reason = "deterministic transform: decoded and resized once, normalised per batch"
    if kept is not None:
        reason += " (pixels reused from an earlier run of this process on the same files)"
    return cached, CacheDecision(True, reason, placement, nbytes, time.perf_counter() - t0, kept is not None)


def _reuse_key(data: ImageListDataset, before: list[Any]) -> tuple | None:
    """What identifies a split's decoded pixels: files (path, label, size, mtime) and the resize steps."""
    try:
        files = tuple((rel, int(label), st.st_size, st.st_mtime_ns)
                      for (rel, label), st in ((e, os.stat(data.base / e[0])) for e in data.entries))
    except OSError:
        return None  # a missing file: let the decoding report it
    return str(Path(data.base).resolve()), files, tuple(repr(step) for step in before)


def _keep(key: tuple, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Remember decoded pixels for later runs, dropping the least recently used beyond ``REUSE_BYTES``."""
    if images.numel() > REUSE_BYTES:
        return
    _REUSED[key] = (images, labels)
    while sum(i.numel() for i, _ in _REUSED.values()) > REUSE_BYTES:
        _REUSED.popitem(last=False)


class IndexBatches:
    """Index batches in the exact order of ``DataLoader(data, batch_size, shuffle=True, generator=g)``.

    A ``DataLoader`` over ``range(N)`` with the same generator draws the same permutation and consumes the
    generator the same way, so the run's shuffling and its resume state do not depend on the cache.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, drop_last: bool = False) -> None:
        self.loader = DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=generator,
                                 drop_last=drop_last)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.loader)  # (B,) int64 per batch


class CachedBatches:
    """Training batches from a :class:`DecodedImageDataset`, already on the device and normalised."""

    def __init__(self, data: DecodedImageDataset, batch_size: int, generator: torch.Generator,
                 device: torch.device, drop_last: bool = False) -> None:
        self.data, self.device = data, device
        self.indices = IndexBatches(len(data), batch_size, generator, drop_last)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in self.indices:
            yield self.data.batch(index, self.device)


def loader_kwargs(num_workers: int, device: torch.device) -> dict[str, Any]:
    """Worker settings for decoded-every-epoch splits: pinned memory on CUDA, persistent workers, prefetch."""
    kwargs: dict[str, Any] = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4)
    return kwargs


class WaitClock:
    """Time spent waiting for the next batch, per epoch (``wrap`` the batch iterable each epoch)."""

    def __init__(self) -> None:
        self.epochs: list[float] = []

    def wrap(self, batches: Sized) -> Iterator[Any]:
        self.epochs.append(0.0)
        it = iter(batches)  # type: ignore[call-overload]
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.epochs[-1] += time.perf_counter() - t0
                return
            self.epochs[-1] += time.perf_counter() - t0
            yield item


def data_wait_fraction(waits: list[float], epoch_seconds: list[float]) -> float | None:
    """Share of training time spent waiting for data, over the epochs after the first (or the only one)."""
    pairs = list(zip(waits, epoch_seconds, strict=False))
    steady = pairs[1:] if len(pairs) > 1 else pairs
    total = sum(t for _, t in steady)
    return sum(w for w, _ in steady) / total if total > 0 else None
