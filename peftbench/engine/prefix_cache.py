"""Frozen-prefix caching and the training inputs of one run.

When the inputs of every epoch are the same tensors (a decoded, augmentation-free split; see
:mod:`peftbench.data.cache`) and every trainable parameter of a timm ViT sits after some unit of its forward
pass, the frozen units before it compute the same activations every epoch. They are computed once, kept,
and training runs only the rest of the network on them: a linear probe trains its head on the pooled
features, Partial-k trains its last k blocks on the output of block L-k-1. Gradients never reach the
prefix in either path (nothing in it trains), so the result is the uncached one up to float rounding.

The forward pass of ``timm.models.vision_transformer.VisionTransformer`` is split into units, in order::

    stem (patch_embed, _pos_embed with pos_drop, patch_drop, norm_pre) | blocks[0] ... blocks[L-1] | norm
    | pre_logits (pool, fc_norm, head_drop) | head

The cached prefix is the longest run of leading units that hold no trainable parameter, no method module
(:class:`~peftbench.methods.base.PeftModule`) and nothing random or stateful in training mode (dropout,
drop-path, patch dropout, batch norm). It must cover at least the stem and one block to be worth keeping.
Anything else (Swin, a model whose ``forward`` is not the ViT's, LST whose side network reads every block)
trains on images as usual; the decision and its reason are recorded with the run.

With periodic evaluations (``trainer.eval_every``) the evaluation split, also fixed, is decoded and its prefix
computed once (at the first evaluation); each evaluation then runs only the suffix.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from peftbench.data.cache import (
    CachedBatches,
    CacheDecision,
    DecodedImageDataset,
    IndexBatches,
    decode_split,
    free_bytes,
    is_cacheable,
    loader_kwargs,
)
from peftbench.methods.base import PeftModule

_MEM_FRACTION = 0.5  # at most this share of free device / available host memory holds cached activations


@dataclasses.dataclass
class Unit:
    """One step of the ViT forward pass: its name, what it computes and what it owns."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    modules: list[nn.Module]
    params: list[nn.Parameter]


def vit_units(model: nn.Module) -> list[Unit] | None:
    """The forward pass of a timm ViT as units (see module docstring); None for other models."""
    from timm.models.vision_transformer import VisionTransformer

    if not isinstance(model, VisionTransformer) or type(model).forward is not VisionTransformer.forward:
        return None
    if type(model).forward_features is not VisionTransformer.forward_features:
        return None

    def stem(x: torch.Tensor) -> torch.Tensor:
        return model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))  # (B, N, D)

    tokens = [getattr(model, n, None) for n in ("cls_token", "reg_token", "pos_embed")]
    stem_modules = [getattr(model, n) for n in ("patch_embed", "pos_drop", "patch_drop", "norm_pre")
                    if isinstance(getattr(model, n, None), nn.Module)]
    units = [Unit("stem", stem, stem_modules,
                  [t for t in tokens if isinstance(t, nn.Parameter)])]
    if isinstance(model.blocks, nn.Sequential) and not isinstance(model.blocks, PeftModule):
        units += [Unit(f"blocks[{i}]", b, [b], []) for i, b in enumerate(model.blocks)]
    else:
        units.append(Unit("blocks", model.blocks, [model.blocks], []))
    units.append(Unit("norm", model.norm, [model.norm], []))
    head_side = [getattr(model, n) for n in ("attn_pool", "fc_norm", "head_drop") if isinstance(getattr(model, n, None), nn.Module)]
    units.append(Unit("pre_logits", lambda x: model.forward_head(x, pre_logits=True), head_side, []))
    units.append(Unit("head", model.head, [model.head], []))
    return units


def _frozen_and_fixed(unit: Unit) -> bool:
    """True when ``unit`` trains nothing and computes the same in training and evaluation mode."""
    from timm.layers import DropPath, PatchDropout

    if any(p.requires_grad for p in unit.params):
        return False
    for module in unit.modules:
        for m in module.modules():
            if isinstance(m, PeftModule) or any(p.requires_grad for p in m.parameters(recurse=False)):
                return False
            if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
                return False
            if isinstance(m, DropPath) and m.drop_prob > 0:
                return False
            if isinstance(m, PatchDropout) and m.prob > 0:
                return False
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                return False
    return True


def frozen_prefix(model: nn.Module) -> tuple[list[Unit], list[Unit]] | str:
    """Split ``model`` into (cached prefix, trained suffix), or say why it cannot be split."""
    units = vit_units(model)
    if units is None:
        return "not a plain timm VisionTransformer forward"
    cut = 0
    while cut < len(units) and _frozen_and_fixed(units[cut]):
        cut += 1
    if cut == len(units):
        return "nothing trains"
    if cut < 2:
        first = units[cut].name
        return f"a trainable, method or random module in '{first}': no frozen block to cache before it"
    return units[:cut], units[cut:]


def _run(units: list[Unit], x: torch.Tensor) -> torch.Tensor:
    for unit in units:
        x = unit.fn(x)
    return x


@dataclasses.dataclass
class TrainInputs:
    """What the training loop iterates and calls: ``for x, y in batches: logits = forward(x)``."""

    batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
    forward: Callable[[torch.Tensor], torch.Tensor]
    record: dict[str, Any]
    # accuracy on the cached evaluation prefix (an optional collector receives logits and labels); None: images
    evaluate: Callable[[Any], float] | None = None


class _FeatureBatches:
    """Cached prefix activations in the shuffled order of the images they came from."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 generator: torch.Generator, drop_last: bool = False) -> None:
        self.features, self.labels = features, labels  # (N, ...) on the device, (N,)
        self.indices = IndexBatches(features.shape[0], batch_size, generator, drop_last)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in self.indices:
            index = index.to(self.features.device)
            yield self.features.index_select(0, index), self.labels.index_select(0, index)


def _compute_prefix(prefix: list[Unit], data: DecodedImageDataset, batch_size: int, device: torch.device,
                    dtype: torch.dtype | None) -> torch.Tensor:
    """The prefix's output for every cached image, ``(N, ...)`` on ``device``."""
    n = len(data)
    out = torch.empty(0)
    # no_grad, not inference_mode: the suffix's backward reads these tensors.
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for start in range(0, n, batch_size):
            index = torch.arange(start, min(start + batch_size, n))
            images, _ = data.batch(index, device)
            feats = _run(prefix, images)
            if start == 0:
                out = torch.empty((n, *feats.shape[1:]), dtype=feats.dtype, device=device)
            out[start : start + feats.shape[0]] = feats
    return out


def build_train_inputs(
    model: nn.Module,
    train_data: Dataset,
    batch_size: int,
    prefix_batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype | None,
    num_workers: int = 0,
    input_cache: bool = True,
    prefix_cache: bool = True,
    compile_backend: str | None = None,
    eval_data: Dataset | None = None,
    drop_last: bool = False,
) -> TrainInputs:
    """Choose how training batches are made and what the loop calls on them.

    Args:
        model: the prepared model, already on ``device``.
        train_data: the training split.
        batch_size: training batch size.
        prefix_batch_size: batch size for computing the cached prefix once (the eval batch size).
        generator: the run's shuffling generator (consumed exactly as a ``DataLoader`` would).
        device: the training device.
        dtype: the autocast dtype of training (None: fp32).
        num_workers: data-loader workers for splits decoded every epoch (and for decoding once).
        input_cache: allow decoding a deterministic split once.
        prefix_cache: allow caching the frozen prefix of the model on a decoded split.
        compile_backend: ``torch.compile`` the training forward with this backend (None: eager).
        eval_data: the evaluation split, given when it is evaluated more than once (``trainer.eval_every`` /
            ``eval_epochs``): with a cached training prefix it is decoded and its prefix computed once too.
        drop_last: drop the last incomplete batch of every epoch (``trainer.drop_last``).

    Returns:
        The batches, the forward callable and the decisions, for the result JSON.
    """
    record: dict[str, Any] = {}
    cached: DecodedImageDataset | None = None
    evaluator: Callable[[Any], float] | None = None
    if not input_cache:
        record["input_cache"] = CacheDecision(False, "disabled (trainer.input_cache=false)").to_dict()
    elif isinstance(train_data, DecodedImageDataset):
        cached = train_data
        record["input_cache"] = CacheDecision(True, "split given decoded", str(train_data.images.device)).to_dict()
    elif is_cacheable(train_data):
        cached, decision = decode_split(train_data, device, num_workers)  # type: ignore[arg-type]
        record["input_cache"] = decision.to_dict()
    else:
        record["input_cache"] = CacheDecision(False, "random transform or not an image-list split").to_dict()

    forward: Callable[[torch.Tensor], torch.Tensor] = model
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
    if cached is None:
        batches = DataLoader(train_data, batch_size=batch_size, shuffle=True, generator=generator,
                             drop_last=drop_last, **loader_kwargs(num_workers, device))
        record["prefix_cache"] = {"enabled": False, "reason": "inputs change every epoch or are not decoded once"}
    else:
        batches = CachedBatches(cached, batch_size, generator, device, drop_last)
        split = frozen_prefix(model) if prefix_cache else "disabled (trainer.prefix_cache=false)"
        if isinstance(split, str):
            record["prefix_cache"] = {"enabled": False, "reason": split}
        else:
            prefix, suffix = split
            batches, forward, record["prefix_cache"] = _prefix_batches(
                model, prefix, suffix, cached, batch_size, prefix_batch_size, generator, device, dtype, batches,
                drop_last)
            if record["prefix_cache"]["enabled"] and eval_data is not None:
                evaluator, record["eval_prefix_cache"] = _eval_cache(
                    model, prefix, suffix, eval_data, prefix_batch_size, device, dtype, num_workers)
    if compile_backend:
        forward = torch.compile(forward, backend=compile_backend)
    record["compile"] = compile_backend or None
    # timm picks fused scaled-dot-product attention per Attention module at construction
    flags = [bool(m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    record["fused_attn"] = all(flags) if flags else None
    return TrainInputs(batches, forward, record, evaluator if eval_data is not None else None)


def _prefix_batches(model: nn.Module, prefix: list[Unit], suffix: list[Unit], cached: DecodedImageDataset, batch_size: int,
                    prefix_batch_size: int, generator: torch.Generator, device: torch.device,
                    dtype: torch.dtype | None, fallback: CachedBatches,
                    drop_last: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """Compute the prefix once when its activations fit; else keep training on images."""
    t0 = time.perf_counter()
    with torch.no_grad():
        probe, _ = cached.batch(torch.arange(1), device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            one = _run(prefix, probe)
    nbytes = len(cached) * one[0].numel() * one.element_size()
    budget = int(_MEM_FRACTION * free_bytes(device))
    info: dict[str, Any] = {"cached_through": prefix[-1].name, "trained_from": suffix[0].name, "nbytes": nbytes}
    if nbytes > budget:
        reason = f"{nbytes / 2**20:.0f} MiB of activations exceed the memory budget ({budget / 2**20:.0f} MiB)"
        return fallback, model, {"enabled": False, "reason": reason, **info}
    features = _compute_prefix(prefix, cached, prefix_batch_size, device, dtype)
    labels = cached.labels.to(device)
    info.update(enabled=True, reason="fixed inputs and a frozen, deterministic prefix",
                build_seconds=time.perf_counter() - t0)
    return _FeatureBatches(features, labels, batch_size, generator, drop_last), _run_from(suffix), info


def _run_from(units: list[Unit]) -> Callable[[torch.Tensor], torch.Tensor]:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return _run(units, x)

    return forward


class CachedEvaluator:
    """Top-1 accuracy (percent) on a decoded evaluation split whose frozen prefix runs once, at the first call."""

    def __init__(self, model: nn.Module, prefix: list[Unit], suffix: list[Unit], data: DecodedImageDataset,
                 batch_size: int, device: torch.device, dtype: torch.dtype | None) -> None:
        self.model, self.prefix, self.suffix = model, prefix, suffix
        self.data: DecodedImageDataset | None = data
        self.batch_size, self.device, self.dtype = batch_size, device, dtype
        self.features = torch.empty(0)
        self.labels = data.labels.to(device)

    def __call__(self, collector: Any = None) -> float:
        """Top-1 accuracy; ``collector`` (:class:`~peftbench.engine.predictions.PredictionCollector`), when
        given, receives every batch's logits and labels."""
        # An evaluation DataLoader draws one seed from the global generator; drawing it here too keeps the
        # random stream of the rest of training (dropout in the trained part) that of the uncached run.
        torch.empty((), dtype=torch.int64).random_()
        self.model.eval()
        if self.data is not None:
            self.features = _compute_prefix(self.prefix, self.data, self.batch_size, self.device, self.dtype)
            self.data = None  # the pixels are no longer needed
        correct, n = 0, self.labels.shape[0]
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            for start in range(0, n, self.batch_size):
                logits = _run(self.suffix, self.features[start : start + self.batch_size])
                labels = self.labels[start : start + self.batch_size]
                if collector is not None:
                    collector.add(logits, labels)
                correct += (logits.argmax(dim=-1) == labels).sum().item()
        return 100.0 * correct / max(n, 1)


def _eval_cache(model: nn.Module, prefix: list[Unit], suffix: list[Unit], eval_data: Dataset, batch_size: int,
                device: torch.device, dtype: torch.dtype | None, num_workers: int) -> tuple[
                    CachedEvaluator | None, dict[str, Any]]:
    """Decode the evaluation split and plan its prefix cache when both fit; else evaluate images as usual."""
    if not is_cacheable(eval_data):
        return None, {"enabled": False, "reason": "random transform or not an image-list split"}
    decoded, decision = decode_split(eval_data, device, num_workers)  # type: ignore[arg-type]
    if decoded is None:
        return None, {"enabled": False, "reason": decision.reason}
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        one = _run(prefix, decoded.batch(torch.arange(1), device)[0])
    nbytes = len(decoded) * one[0].numel() * one.element_size()
    budget = int(_MEM_FRACTION * free_bytes(device))
    if nbytes > budget:
        reason = f"{nbytes / 2**20:.0f} MiB of activations exceed the memory budget ({budget / 2**20:.0f} MiB)"
        return None, {"enabled": False, "reason": reason}
    evaluator = CachedEvaluator(model, prefix, suffix, decoded, batch_size, device, dtype)
    return evaluator, {"enabled": True, "reason": "periodic evaluations of a fixed split", "nbytes": nbytes}
