"""Synthetic-batch benchmark of a backbone x method: step cost relative to a forward pass, memory,
inference throughput, and the merged model against the plain backbone.

A frozen backbone changes what a step must cost: no weight gradients for frozen layers, so a PEFT
step needs about one forward plus one input-gradient backward (about 2x a forward), full fine-tuning
about 3x, and methods that never backpropagate through the backbone about 1x. The ratios printed here
say how close a method gets.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peftbench.engine.loop import resolve_device
from peftbench.engine.measure import PeakMemory, device_name, inference_throughput, sync
from peftbench.errors import ConfigError
from peftbench.methods import build_method
from peftbench.methods.prepare import prepare_model


@dataclasses.dataclass
class BenchConfig:
    """The ``bench:`` block of ``configs/bench.yaml``."""

    batch_size: int = 64
    infer_batch_sizes: tuple[int, ...] = (1, 64)
    num_classes: int = 100
    warmup: int = 2
    iters: int = 5
    device: str = "auto"
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU | fp32 | bf16

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.iters < 1 or self.warmup < 0:
            raise ConfigError("bench.batch_size and bench.iters must be >= 1, bench.warmup >= 0")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"bench.precision={self.precision!r}; valid: auto, fp32, bf16")
        self.infer_batch_sizes = tuple(self.infer_batch_sizes)


def _median_ms(fn, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _step_ms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: BenchConfig, device, dtype) -> tuple[float, float]:
    """Median train-step time (forward, backward, AdamW step) and the peak memory of those steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # allocate optimizer state before the memory window
    mem = PeakMemory(device)
    mem.start()
    ms = _median_ms(step, device, cfg.warmup, cfg.iters)
    return ms, mem.peak_mb()


def _forward_ms(model: nn.Module, x: torch.Tensor, cfg: BenchConfig, device, dtype) -> float:
    model.eval()

    @torch.inference_mode()
    def fwd() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x)

    return _median_ms(fwd, device, cfg.warmup, cfg.iters)


def run_bench(backbone_cfg: Any, method_name: str, method_options: dict[str, Any], cfg: BenchConfig) -> dict[str, Any]:
    """Benchmark one backbone x method on random inputs; return the figures as a flat dict."""
    from peftbench.models import build_backbone

    device = resolve_device(cfg.device)
    dtype = torch.bfloat16 if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda") else None
    backbone_cfg = dataclasses.replace(backbone_cfg, weights="none")
    size = backbone_cfg.img_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, 3, size, size, generator=g).to(device)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=g).to(device)

    torch.manual_seed(0)
    full = build_backbone(backbone_cfg, cfg.num_classes)
    prepare_model(full, build_method("full"))
    full.to(device)
    full_forward = _forward_ms(full, x, cfg, device, dtype)
    full_step, _ = _step_ms(full, x, y, cfg, device, dtype)
    base_infer = {b: inference_throughput(full, x[:b], device, dtype, cfg.warmup, cfg.iters) for b in cfg.infer_batch_sizes}
    del full

    torch.manual_seed(0)
    method = build_method(method_name, method_options)
    model = build_backbone(backbone_cfg, cfg.num_classes)
    counts = prepare_model(model, method)
    model.to(device)
    forward = _forward_ms(model, x, cfg, device, dtype)
    step, peak = _step_ms(model, x, y, cfg, device, dtype)
    out: dict[str, Any] = {
        "backbone": backbone_cfg.name,
        "method": method.name,
        "family": method.family,
        "device": device_name(device),
        "precision": "bf16" if dtype else "fp32",
        "batch_size": cfg.batch_size,
        "trainable_params_without_head": counts.trainable_params_without_head,
        "forward_ms": forward,
        "train_step_ms": step,
        "train_over_forward": step / forward,
        "full_ft_forward_ms": full_forward,
        "full_ft_train_step_ms": full_step,
        "full_ft_over_forward": full_step / full_forward,
        "peak_train_mem_mb": peak,
    }
    for b in cfg.infer_batch_sizes:
        out[f"infer_img_s_b{b}"] = inference_throughput(model, x[:b], device, dtype, cfg.warmup, cfg.iters)
        out[f"base_infer_img_s_b{b}"] = base_infer[b]
    out["infer_img_s"] = out[f"infer_img_s_b{max(cfg.infer_batch_sizes)}"]
    if method.mergeable:
        merged = method.merge(model).to(device)
        for b in cfg.infer_batch_sizes:
            out[f"merged_infer_img_s_b{b}"] = inference_throughput(merged, x[:b], device, dtype, cfg.warmup, cfg.iters)
        big = max(cfg.infer_batch_sizes)
        out["merged_infer_over_base"] = out[f"merged_infer_img_s_b{big}"] / base_infer[big]
    else:
        out["merged_infer_over_base"] = None
    return out
