"""Synthetic-batch benchmark of a backbone x method: step cost relative to a forward pass, memory,
inference throughput, and the merged model against the plain backbone.

A frozen backbone changes what a step must cost: no weight gradients for frozen layers, so a PEFT
step needs about one forward plus one input-gradient backward (about 2x a forward), full fine-tuning
about 3x, and methods that never backpropagate through the backbone about 1x. The ratios printed here
say how close a method gets.

Timing is made robust to a noisy machine: untimed warmup, then ``repeats`` rounds in which the timed
functions of one comparison (forward and train step; LoRA and PEFT's LoRA) take turns, so load that drifts
over the run hits both sides alike; every figure is the median over all rounds.

Beyond single steps, ``probe_*`` measures a whole VTAB-1k-shaped run (``probe_images`` cached images,
``probe_epochs`` epochs, the real training loop) for methods whose frozen prefix is cached, against one
forward pass over the same images.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peftbench.assemble import MethodSpec, build_model, make_method, runtime_for
from peftbench.engine.costs import StepProbe, forward_gflops, latency_ms
from peftbench.engine.measure import device_name, sync
from peftbench.errors import ConfigError


@dataclasses.dataclass
class BenchConfig:
    """The ``bench:`` block of ``configs/bench.yaml``."""

    batch_size: int = 64
    infer_batch_sizes: tuple[int, ...] = (1, 64)
    num_classes: int = 100
    warmup: int = 2
    iters: int = 5  # timed calls per round
    repeats: int = 3  # interleaved rounds; figures are medians over repeats x iters calls
    device: str = "auto"
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU | fp32 | bf16
    compare_hf_lora: bool = True  # method=lora: time PEFT's LoRA of the same rank and targets beside it
    probe_images: int = 1000  # images of the VTAB-1k-shaped run (train800val200)
    probe_epochs: int = 100  # epochs of that run; 0 skips it
    num_threads: int = 0  # torch CPU threads (0 keeps torch's default); 1 is steadier on a shared CPU
    probe_methods: tuple[str, ...] = ()  # methods that get the probe run; empty = every method with a cached prefix
    task: str = "cifar"  # dataset name given to methods with per-task settings (NOAH's published subnet, VPT auto)
    suite: str = "vtab"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.iters < 1 or self.repeats < 1 or self.warmup < 0:
            raise ConfigError("bench.batch_size, bench.iters and bench.repeats must be >= 1, bench.warmup >= 0")
        if self.probe_images < 1 or self.probe_epochs < 0:
            raise ConfigError("bench.probe_images must be >= 1 and bench.probe_epochs >= 0")
        if self.num_threads < 0:
            raise ConfigError(f"bench.num_threads must be >= 0 (0 = torch's default), got {self.num_threads}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"bench.precision={self.precision!r}; valid: auto, fp32, bf16")
        self.infer_batch_sizes = tuple(self.infer_batch_sizes)
        self.probe_methods = tuple(self.probe_methods)
        if not self.infer_batch_sizes or min(self.infer_batch_sizes) < 1:
            raise ConfigError(f"bench.infer_batch_sizes must be a non-empty list of sizes >= 1, got {self.infer_batch_sizes}")


def interleaved_ms(fns: dict[str, Callable[[], None]], device: torch.device, cfg: BenchConfig) -> dict[str, float]:
    """Median milliseconds per call of each function, timed in alternating rounds.

    Args:
        fns: name -> a call to time (its outputs are discarded).
        device: synchronised around every call.
        cfg: warmup calls, calls per round (``iters``) and rounds (``repeats``).

    Returns:
        name -> median ms over ``repeats * iters`` calls.
    """
    for fn in fns.values():
        for _ in range(cfg.warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for r in range(cfg.repeats):
        for name in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
            for _ in range(cfg.iters):
                sync(device)
                t0 = time.perf_counter()
                fns[name]()
                sync(device)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def _step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             dtype: torch.dtype | None) -> Callable[[], None]:
    """One training step as the trainer makes it: forward, loss, backward, AdamW (fused on CUDA)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")

    def step() -> None:
        model.train()
        with _autocast(device, dtype):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # optimizer state exists from here on
    step.optimizer = opt  # type: ignore[attr-defined]  # for the probed step (engine/costs.py)
    return step


def _forward_fn(model: nn.Module, x: torch.Tensor, device: torch.device, dtype: torch.dtype | None) -> Callable[[], None]:
    @torch.inference_mode()
    def forward() -> None:
        model.eval()
        with _autocast(device, dtype):
            model(x)

    return forward


def _step_costs(model: nn.Module, step: Callable[[], None], batch_size: int, device: torch.device) -> dict[str, Any]:
    """Memory and FLOPs of one more training step (the keys of engine/costs.py's StepCosts)."""
    probe = StepProbe(model, step.optimizer, device)  # type: ignore[attr-defined]
    with probe.measure(batch_size):
        step()
    return dataclasses.asdict(probe.costs)


def _infer_img_s(models: dict[str, nn.Module], x: torch.Tensor, sizes: tuple[int, ...], device: torch.device,
                 dtype: torch.dtype | None, cfg: BenchConfig) -> dict[str, float]:
    """``<name>_b<size>`` -> images/s, each batch size timed with the models interleaved."""
    out: dict[str, float] = {}
    for b in sizes:
        xb = x[:b] if b <= x.shape[0] else x[torch.arange(b) % x.shape[0]]
        ms = interleaved_ms({name: _forward_fn(m, xb, device, dtype) for name, m in models.items()}, device, cfg)
        out.update({f"{name}_b{b}": 1e3 * b / t for name, t in ms.items()})
    return out


class FullReference:
    """Full fine-tuning's forward and step on the same backbone and batch, measured once per sweep."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.figures: dict[str, float] = {}
        self.model: nn.Module | None = None

    def get(self, backbone_cfg: Any, x: torch.Tensor, y: torch.Tensor, cfg: BenchConfig, device: torch.device,
            dtype: torch.dtype | None) -> tuple[nn.Module, dict[str, float]]:
        key = (backbone_cfg, tuple(x.shape), cfg, str(dtype))
        if self.key != key or self.model is None:
            torch.manual_seed(0)
            full = build_model(backbone_cfg, make_method(MethodSpec("full", "full"), cfg.task, cfg.suite),
                               cfg.num_classes, weights=False).model
            full.to(device)
            ms = interleaved_ms({"forward": _forward_fn(full, x, device, dtype),
                                 "step": _step_fn(full, x, y, device, dtype)}, device, cfg)
            full.zero_grad(set_to_none=True)
            full.requires_grad_(False)
            self.key, self.model = key, full
            self.figures = {"full_ft_forward_ms": ms["forward"], "full_ft_train_step_ms": ms["step"],
                            "full_ft_over_forward": ms["step"] / ms["forward"]}
        return self.model, self.figures


def run_bench(backbone_cfg: Any, method_spec: MethodSpec, cfg: BenchConfig,
              reference: FullReference | None = None) -> dict[str, Any]:
    """Benchmark one backbone x method on random inputs; return the figures as a flat dict.

    Args:
        backbone_cfg: the backbone (built at random init: weights do not change the cost).
        method_spec: the method block (its ``label`` names the row).
        cfg: the bench settings.
        reference: full fine-tuning's figures to reuse across calls (a sweep passes one; None measures anew).

    Returns:
        Step/forward ratios against full fine-tuning, peak training memory, inference throughput of the
        prepared, the merged (mergeable methods) and the plain model at each batch size, and for
        ``lora`` the side-by-side step time of PEFT's LoRA; see ``results/benchmarks/README.md``.
    """
    runtime = runtime_for(cfg.num_threads, cfg.device, cfg.precision, None)
    device, dtype = runtime.device, runtime.dtype
    backbone_cfg = dataclasses.replace(backbone_cfg, weights="none")
    size = backbone_cfg.img_size
    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, 3, size, size, generator=g).to(device)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), generator=g).to(device)
    reference = reference if reference is not None else FullReference()
    base, full_figures = reference.get(backbone_cfg, x, y, cfg, device, dtype)

    torch.manual_seed(0)
    method = make_method(method_spec, cfg.task, cfg.suite)
    built = build_model(backbone_cfg, method, cfg.num_classes, weights=False)
    model, counts = built.model, built.counts
    model.to(device)
    step = _step_fn(model, x, y, device, dtype)
    ms = interleaved_ms({"forward": _forward_fn(model, x, device, dtype), "step": step}, device, cfg)
    out: dict[str, Any] = {
        "backbone": backbone_cfg.name,
        "method": method_spec.label,
        "family": method.family,
        "status": "ok",
        "device": device_name(device),
        "precision": "bf16" if dtype else "fp32",
        "batch_size": cfg.batch_size,
        "trainable_params_without_head": counts.trainable_params_without_head,
        "forward_ms": ms["forward"],
        "train_step_ms": ms["step"],
        "train_over_forward": ms["step"] / ms["forward"],
        **full_figures,
        "train_step_over_full_ft_forward": ms["step"] / full_figures["full_ft_forward_ms"],
        **_step_costs(model, step, cfg.batch_size, device),
        "forward_gflops": forward_gflops(model, x[:2]),
        "latency_b1_ms": latency_ms(model, x[:1], device, dtype, cfg.warmup, cfg.repeats * cfg.iters, sync),
    }
    del step
    model.zero_grad(set_to_none=True)
    models = {"infer_img_s": model, "base_infer_img_s": base}
    merged = None
    out["merged_forward_gflops"] = None
    if method.mergeable:
        import copy

        merged = method.merge(copy.deepcopy(model)).to(device)
        out["merged_forward_gflops"] = forward_gflops(merged, x[:2])
        models["merged_infer_img_s"] = merged
    out.update(_infer_img_s(models, x, cfg.infer_batch_sizes, device, dtype, cfg))
    big = max(cfg.infer_batch_sizes)
    out["infer_img_s"] = out[f"infer_img_s_b{big}"]
    out["infer_over_base"] = out["infer_img_s"] / out[f"base_infer_img_s_b{big}"]
    out["merged_infer_over_base"] = out[f"merged_infer_img_s_b{big}"] / out[f"base_infer_img_s_b{big}"] if merged else None
    del merged
    if method.name == "lora" and cfg.compare_hf_lora:
        out.update(compare_hf_lora(backbone_cfg, method.config, x, y, device, dtype, cfg))
    if cfg.probe_methods and method.name not in cfg.probe_methods:
        if cfg.probe_epochs:
            out["probe_status"] = "skipped: not in bench.probe_methods"
    else:
        out.update(probe_run(model, backbone_cfg, cfg, device, dtype))
    return out


def compare_hf_lora(backbone_cfg: Any, lora_cfg: Any, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                    dtype: torch.dtype | None, cfg: BenchConfig) -> dict[str, Any]:
    """peftbench's ``lora`` against Hugging Face PEFT's LoRA (``hf_lora``) of the same rank, scaling, dropout
    and targets on the same backbone, their train steps timed in alternating rounds in this process."""
    from peftbench.errors import PeftbenchError

    options = {"targets": lora_cfg.targets, "rank": lora_cfg.rank, "alpha": lora_cfg.scaling * lora_cfg.rank,
               "dropout": lora_cfg.dropout}
    models = {}
    try:
        for name, opts in (("lora", dataclasses.asdict(lora_cfg)), ("hf_lora", options)):
            torch.manual_seed(0)
            method = make_method(MethodSpec(name, name, opts), cfg.task, cfg.suite)
            models[name] = build_model(backbone_cfg, method, cfg.num_classes, weights=False).model.to(device)
    except PeftbenchError as exc:  # PEFT not installed, or targets PEFT's bridge has no preset for
        return {"hf_lora_status": f"skipped: {exc}"}
    ms = interleaved_ms({n: _step_fn(m, x, y, device, dtype) for n, m in models.items()}, device, cfg)
    return {
        "hf_lora_status": "ok",
        "paired_lora_train_step_ms": ms["lora"],
        "hf_lora_train_step_ms": ms["hf_lora"],
        "lora_over_hf_lora_step": ms["lora"] / ms["hf_lora"],
    }


def probe_run(model: nn.Module, backbone_cfg: Any, cfg: BenchConfig, device: torch.device,
              dtype: torch.dtype | None) -> dict[str, Any]:
    """A whole VTAB-1k-shaped training run (real loop, cached inputs, ``probe_epochs`` epochs) against one
    forward pass over its images; only for methods whose frozen prefix the trainer caches."""
    from peftbench.data.cache import DecodedImageDataset
    from peftbench.engine.loop import TrainerConfig, train_and_evaluate
    from peftbench.engine.optim import OptimConfig
    from peftbench.engine.prefix_cache import frozen_prefix

    if cfg.probe_epochs == 0:
        return {}
    split = frozen_prefix(model)
    if isinstance(split, str):
        return {"probe_status": f"skipped: no cached prefix ({split})"}
    size, n = backbone_cfg.img_size, cfg.probe_images
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, cfg.num_classes, (n,), generator=g)
    host = DecodedImageDataset(pixels, labels, torch.full((3,), 0.5), torch.full((3,), 0.5))
    data = host.to(device)  # as the trainer places a split that fits
    one = DecodedImageDataset(pixels[:1], labels[:1], host.mean, host.std)

    @torch.inference_mode()
    def forward_pass() -> None:
        model.eval()
        for start in range(0, n, cfg.batch_size):
            images, _ = data.batch(torch.arange(start, min(start + cfg.batch_size, n)), device)
            with _autocast(device, dtype):
                model(images)

    forward_pass_ms = interleaved_ms({"pass": forward_pass}, device, dataclasses.replace(cfg, iters=1))["pass"]
    precision = "bf16" if dtype else "fp32"
    trainer = TrainerConfig(epochs=cfg.probe_epochs, batch_size=cfg.batch_size, eval_batch_size=cfg.batch_size,
                            warmup_epochs=min(10, cfg.probe_epochs), precision=precision, device=str(device),
                            progress=False)
    sync(device)
    t0 = time.perf_counter()
    outcome = train_and_evaluate(model, data, one, trainer, OptimConfig(), device, seed=0)
    sync(device)
    run_ms = (time.perf_counter() - t0) * 1e3
    return {
        "probe_status": "ok",
        "probe_images": n,
        "probe_epochs": cfg.probe_epochs,
        "probe_prefix_cached_through": outcome.input_pipeline["prefix_cache"].get("cached_through"),
        "probe_forward_pass_ms": forward_pass_ms,
        "probe_run_ms": run_ms,
        "probe_run_over_forward_pass": run_ms / forward_pass_ms,
    }


# -- sweep over every registered method ----------------------------------------------------------------
TABLE_COLUMNS = ("method", "status", "train_over_forward", "full_ft_over_forward", "saved_activation_mb",
                 "train_state_mb", "peak_train_mem_mb", "forward_gflops", "merged_forward_gflops", "train_step_gflops",
                 "latency_b1_ms", "infer_img_s", "merged_infer_over_base", "lora_over_hf_lora_step",
                 "probe_run_over_forward_pass")


def run_sweep(backbone_cfg: Any, cfg: BenchConfig, out_dir: Path, command: str,
              methods: list[str] | None = None) -> dict[str, Any]:
    """Benchmark every registered method (or ``methods``) with its default options on one backbone.

    Writes ``<out_dir>/<device>.csv`` (one row per method; a method that cannot run on the backbone gets
    ``status`` = the error) and ``<out_dir>/<device>.md`` (machine, versions, the exact command, a table).

    Args:
        backbone_cfg: the backbone.
        cfg: bench settings shared by every method.
        out_dir: where the two files go (replaced if present).
        command: the command line, recorded in the markdown file.
        methods: registry names; None = all.

    Returns:
        ``{"csv": path, "markdown": path, "device": ..., "methods": n, "failed": [...]}``.
    """
    import pandas as pd

    from peftbench.engine.measure import device_slug, library_versions
    from peftbench.methods.registry import available_methods

    device = runtime_for(cfg.num_threads, cfg.device, cfg.precision, None).device
    names = available_methods() if methods is None else list(methods)
    unknown = sorted(set(names) - set(available_methods()))
    if unknown:
        raise ConfigError(f"methods= has unknown methods {unknown}; valid: {', '.join(available_methods())}")
    rows: list[dict[str, Any]] = []
    reference = FullReference()
    for name in names:
        try:
            rows.append(run_bench(backbone_cfg, MethodSpec(name, name), cfg, reference))
        except Exception as exc:  # noqa: BLE001  one method (not defined for the backbone, out of memory) must not end the sweep
            rows.append({"backbone": backbone_cfg.name, "method": name, "status": f"{type(exc).__name__}: {exc}"})
            if device.type == "cuda":
                torch.cuda.empty_cache()
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = device_slug(device)
    csv_path, md_path = out_dir / f"{slug}.csv", out_dir / f"{slug}.md"
    frame = pd.DataFrame(rows)
    frame.to_csv(csv_path, index=False)
    params = sum(p.numel() for p in reference.model.parameters()) if reference.model is not None else None
    md_path.write_text(_markdown(frame, backbone_cfg, cfg, device, command, library_versions(), params))
    return {"csv": str(csv_path), "markdown": str(md_path), "device": device_name(device), "methods": len(rows),
            "failed": [r["method"] for r in rows if r.get("status") != "ok"]}


def cpu_affinity() -> str:
    """The CPUs this process may run on (``taskset`` pinning), e.g. ``0 of 2``; empty where unknown."""
    import os

    if not hasattr(os, "sched_getaffinity"):
        return ""
    cores = sorted(os.sched_getaffinity(0))
    return f"{','.join(map(str, cores))} of {os.cpu_count()}"


def _markdown(frame: Any, backbone_cfg: Any, cfg: BenchConfig, device: torch.device, command: str,
              versions: dict[str, str], backbone_params: int | None = None) -> str:
    import datetime as dt
    import os
    import platform

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.3g}"  # NaN (not measured) -> empty
        return "" if v is None else str(v).replace("|", "/").replace("\n", " ")

    cols = [c for c in TABLE_COLUMNS if c in frame.columns]
    precisions = sorted({str(p) for p in frame.get("precision", []) if isinstance(p, str)})
    precision = "/".join(precisions) or cfg.precision
    lines = [
        f"# peftbench-bench on {device_name(device)}",
        "",
        f"- command: `{command}`",
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}",
        f"- machine: {platform.machine()}, {platform.system()} {platform.release()}, {os.cpu_count()} logical CPUs; "
        f"device `{device_name(device)}`; torch threads {torch.get_num_threads()}"
        + (f"; process pinned to CPUs {cpu_affinity()}" if cpu_affinity() else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- backbone `{backbone_cfg.name}` (random init): timm `{backbone_cfg.timm_name}`, "
        f"{backbone_cfg.img_size}x{backbone_cfg.img_size} px"
        + (f", model_kwargs {dict(backbone_cfg.model_kwargs)}" if backbone_cfg.model_kwargs else "")
        + (f", {backbone_params / 1e6:.1f}M params" if backbone_params else ""),
        f"- batch {cfg.batch_size}, inference batches {list(cfg.infer_batch_sizes)}, precision {precision}, "
        f"warmup {cfg.warmup}, {cfg.repeats} interleaved rounds x {cfg.iters} calls, medians",
        f"- probe run: {cfg.probe_images} images x {cfg.probe_epochs} epochs"
        + (f", methods {list(cfg.probe_methods)}" if cfg.probe_methods else ", every method with a cached prefix"),
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in cols) + " |" for row in frame.to_dict("records")]
    return "\n".join(lines) + "\n"


def bench(cfg: Any, command: str) -> dict[str, Any]:
    """``peftbench-bench``: one backbone x method (optionally appended to ``csv``), or every method.

    Args:
        cfg: a composed ``configs/bench.yaml``.
        command: the command line, recorded in an all-methods sweep's markdown file.

    Returns:
        The figures of one method, or the sweep's summary (``all_methods=true``).
    """
    from peftbench.config import build_config, to_plain
    from peftbench.models import make_backbone_config

    plain = to_plain(cfg)
    settings = build_config(BenchConfig, plain["bench"], "bench")
    backbone = make_backbone_config(plain["backbone"])
    if settings.num_threads > 0:
        torch.set_num_threads(settings.num_threads)
    if plain.get("all_methods"):
        return run_sweep(backbone, settings, Path(plain.get("out_dir") or "results/benchmarks"), command,
                         plain.get("methods") or None)
    result = run_bench(backbone, MethodSpec.from_block(plain["method"]), settings)
    if plain.get("csv"):
        import pandas as pd

        path = Path(plain["csv"])
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([result]).to_csv(path, mode="a", header=not path.exists(), index=False)
    return result
