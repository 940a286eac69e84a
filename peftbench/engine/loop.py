"""The train / evaluate loop: one function with typed arguments; what it reads besides them is said where it
happens (the process-wide decoded-pixel cache of :mod:`peftbench.data.cache`, the epoch checkpoint)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from peftbench.data.cache import (
    DecodedImageDataset,
    WaitClock,
    data_wait_fraction,
    decode_split,
    is_cacheable,
)
from peftbench.engine.checkpoint import EpochCheckpoint
from peftbench.engine.costs import StepCosts, StepProbe
from peftbench.engine.measure import sync
from peftbench.engine.optim import OptimConfig, build_optimizer, lr_at, use_fused_adamw
from peftbench.engine.predictions import PredictionCollector, Predictions
from peftbench.engine.prefix_cache import build_train_inputs
from peftbench.errors import ConfigError
from peftbench.identity import resolved_precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = ("per_step", "per_epoch")


@dataclasses.dataclass
class TrainerConfig:
    """The ``trainer:`` group. Defaults: 100 epochs, batch 64, AdamW, lr 1e-3, weight decay 1e-4, 10 linear warmup
    epochs, cosine decay per step (the harness's shared recipe; paper recipes are in ``configs/experiment/``)."""

    epochs: int = 100
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 10
    warmup_lr: float = 1e-7
    min_lr: float = 1e-8
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU; fp16 = autocast + gradient scaler
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_every: int = 0  # also evaluate every N epochs (recorded apart; 0 = only after the last epoch)
    progress: bool = True
    merge: bool = False  # after training, merge reparameterisable methods and measure the merged model
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default
    input_cache: bool = True  # decode augmentation-free splits once (peftbench.data.cache)
    prefix_cache: bool = True  # train on cached frozen-prefix activations when safe (engine.prefix_cache)
    compile: bool = False  # torch.compile the training forward
    compile_backend: str = "inductor"
    infer_warmup: int = 2  # untimed calls before the recorded inference throughput (infer_img_s)
    # timed calls of infer_img_s, each on one eval batch of eval_batch_size; 0 = time the final evaluation's
    # model calls instead (batches after the first; the separate measurement where that ran on cached activations)
    infer_iters: int = 5
    drop_last: bool = False  # drop the last incomplete training batch of every epoch
    lr_schedule: str = "per_step"  # per_step: warmup + cosine per step | per_epoch: timm's CosineLRScheduler
    cooldown_epochs: int = 0  # epochs at min_lr after the cosine (timm's cooldown); the run trains epochs + these
    lr_base_batch: int = 0  # 0: trainer.lr as given; N: peak lr = trainer.lr * batch_size / N (VPT: 256)
    # per_epoch only: epoch e trains at the schedule's value of e - lag (0: timm's train.py, step(epoch + 1) after
    # each epoch; 1: scripts that call step(epoch) after each epoch, so epochs 0 and 1 both train at warmup_lr)
    lr_schedule_lag: int = 0
    # per_epoch only: the cosine runs over the epochs after the warmup (timm's warmup_prefix; VPT's schedule)
    warmup_prefix: bool = False
    # per_epoch only: the cosine's length in epochs (timm's t_initial); 0 = trainer.epochs. Longer than the run
    # (Hydra's code: 500 for a 100-epoch run) stops the decay part-way
    cosine_epochs: int = 0
    # 0-based epoch indices after which the evaluation split is also evaluated (the max over them and the last
    # epoch is recorded as max_eval_accuracy; the sources that report "max test accuracy" evaluate these)
    eval_epochs: list[int] = dataclasses.field(default_factory=list)

    @property
    def total_epochs(self) -> int:
        """Epochs the run trains: the schedule's plus the cooldown."""
        return self.epochs + self.cooldown_epochs

    @property
    def peak_lr(self) -> float:
        """The learning rate the schedule peaks at (``lr_base_batch`` scales it by batch / base)."""
        return self.lr * self.batch_size / self.lr_base_batch if self.lr_base_batch else self.lr
    # write the final evaluation's per-image top-k classes and probabilities to <run>/predictions.npz
    save_predictions: bool = False
    predictions_topk: int = 5  # k of save_predictions (min(k, classes)); the calibration metrics use every class

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"trainer.precision={self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"trainer.lr_schedule={self.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"trainer.{key} must be >= 1, got {getattr(self, key)}")
        for key in ("cooldown_epochs", "lr_base_batch", "lr_schedule_lag", "cosine_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"trainer.{key} must be >= 0, got {getattr(self, key)}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"trainer.warmup_epochs must be in [0, trainer.epochs={self.epochs}], got {self.warmup_epochs}"
            )
        if self.lr <= 0:
            raise ConfigError(f"trainer.lr must be > 0, got {self.lr}")
        if self.infer_warmup < 0:
            raise ConfigError(f"trainer.infer_warmup must be >= 0, got {self.infer_warmup}")
        if self.predictions_topk < 1:
            raise ConfigError(f"trainer.predictions_topk must be >= 1, got {self.predictions_topk}")
        if self.infer_iters < 0:
            raise ConfigError(
                f"trainer.infer_iters must be >= 0 (0: measure on the final evaluation), got {self.infer_iters}"
            )
        self.eval_epochs = list(self.eval_epochs or [])
        bad = [e for e in self.eval_epochs if isinstance(e, bool) or not isinstance(e, int)
               or not 0 <= e < self.total_epochs]
        if bad:
            raise ConfigError(
                f"trainer.eval_epochs must hold 0-based epoch indices in [0, {self.total_epochs - 1}] "
                f"(trainer.epochs + trainer.cooldown_epochs = {self.total_epochs}), got {bad}"
            )

    def evaluates_after(self, epoch: int) -> bool:
        """Whether the evaluation split is evaluated after 0-based epoch ``epoch`` besides the final evaluation."""
        if epoch + 1 >= self.total_epochs:
            return False  # the final evaluation follows
        periodic = bool(self.eval_every) and (epoch + 1) % self.eval_every == 0
        return periodic or epoch in self.eval_epochs


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; explicit names are checked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device={name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available; use trainer.device=cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device={name!r} is not supported; valid: auto, cpu, cuda, cuda:N")
    return device


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (``auto`` or ``bf16``), fp16 for ``fp16``, none on CPU unless asked for
    (:func:`peftbench.identity.resolved_precision`: the login node of a cluster resolves it without torch)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved_precision(precision, device.type))


@dataclasses.dataclass
class TrainOutcome:
    """What the loop measured."""

    status: str  # success | diverged
    accuracy: float | None  # last epoch's top-1 on the evaluation split (percent)
    epochs_completed: int
    final_train_loss: float | None
    train_img_s: float | None  # steady state: epochs after the first (or steps after the first 20%)
    peak_train_mem_mb: float | None  # the probed step's (engine/costs.py); None where no step was probed
    peak_train_mem_source: str
    train_seconds: float
    eval_history: list[dict[str, float]]
    message: str = ""
    data_wait_fraction: float | None = None  # share of epoch time spent waiting for batches (epochs after the first)
    input_pipeline: dict[str, Any] = dataclasses.field(default_factory=dict)  # cache decisions (prefix_cache.py)
    # model-only images/s of the final evaluation's batches after the first; None when it ran on cached prefix
    # activations (not the whole model) or had a single batch
    eval_infer_img_s: float | None = None
    # memory and FLOPs of the first training step this process ran (None: no step ran, or torch.compile was on)
    step_costs: StepCosts | None = None
    # the final evaluation's per-image top-k and calibration (None when training did not finish)
    predictions: Predictions | None = None


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: Dataset, batch_size: int, device: torch.device, dtype: torch.dtype | None, workers: int = 0,
    timing: list[tuple[int, float]] | None = None, collector: PredictionCollector | None = None,
) -> float:
    """Top-1 accuracy (percent) of ``model`` on ``data`` (a decoded split is read in index batches).

    ``timing``, when given, receives ``(images, seconds)`` of the model call of every batch but the first
    (a warm-up), synchronised on CUDA: inference throughput measured on the evaluation itself.
    ``collector``, when given, receives every batch's logits and labels (per-image predictions, calibration).
    """
    model.eval()
    if isinstance(data, DecodedImageDataset):
        # A DataLoader draws one seed from the global generator; drawing it here too keeps the random stream
        # (dropout, drop-path of later epochs) as with per-item decoding.
        torch.empty((), dtype=torch.int64).random_()
        order = torch.arange(len(data))
        batches: Any = (data.batch(order[i : i + batch_size], device) for i in range(0, len(data), batch_size))
    else:
        batches = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
    correct = total = 0
    for k, (images, labels) in enumerate(batches):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        timed = timing is not None and k > 0
        if timed:
            sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(images)
        if timed:
            sync(device)
            timing.append((labels.numel(), time.perf_counter() - t0))  # type: ignore[union-attr]
        if collector is not None:
            collector.add(logits, labels)
        correct += (logits.argmax(dim=-1) == labels).sum().item()
        total += labels.numel()
    return 100.0 * correct / max(total, 1)


def train_and_evaluate(
    model: nn.Module,
    train_data: Dataset,
    eval_data: Dataset,
    cfg: TrainerConfig,
    optim_cfg: OptimConfig,
    device: torch.device,
    seed: int | None,
    num_workers: int = 0,
    log: Callable[[dict[str, Any]], None] | None = None,
    checkpoint: EpochCheckpoint | None = None,
) -> TrainOutcome:
    """Train the trainable parameters of ``model`` and report the last epoch's evaluation accuracy.

    Args:
        model: a prepared model (``requires_grad`` already set by the method).
        train_data: training split, items ``(image (C,H,W), label)``.
        eval_data: evaluation split (val200 when tuning, test in the final protocol).
        cfg: trainer settings.
        optim_cfg: optimizer settings.
        device: where to train.
        seed: seeds the shuffling generator (None: nondeterministic).
        num_workers: data-loader workers.
        log: called with one dict per epoch (and per extra evaluation).
        checkpoint: saves the loop state after each epoch and restores it first when one exists
            (see :mod:`peftbench.engine.checkpoint`).

    Returns:
        The measured outcome. A NaN/inf loss stops training with status ``diverged``.
    """
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(
        params, optim_cfg, cfg.peak_lr, cfg.weight_decay, fused=use_fused_adamw(device, optim_cfg)
    )
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    dtype = autocast_dtype(cfg.precision, device)
    # fp16 autocast needs loss scaling (small gradients underflow in fp16); bf16 and fp32 do not
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    t_setup = time.perf_counter()
    inputs = build_train_inputs(
        model, train_data, cfg.batch_size, cfg.eval_batch_size, generator, device, dtype, num_workers,
        cfg.input_cache, cfg.prefix_cache, cfg.compile_backend if cfg.compile else None,
        eval_data if (cfg.eval_every or cfg.eval_epochs) else None, drop_last=cfg.drop_last,
    )
    setup_seconds = time.perf_counter() - t_setup  # decoding / prefix caches, counted as training time
    loader, clock = inputs.batches, WaitClock()

    decoded_eval: list[Dataset] = []

    def run_eval(timing: list[tuple[int, float]] | None = None, collector: PredictionCollector | None = None) -> float:
        if inputs.evaluate is not None:  # periodic evaluations on a cached frozen prefix
            return inputs.evaluate(collector)
        if not decoded_eval:  # decode a fixed evaluation split once (same pixels as per-item decoding)
            decoded_eval.append(_decoded_eval_split(eval_data, cfg, device, num_workers, inputs.record))
        return evaluate(model, decoded_eval[0], cfg.eval_batch_size, device, dtype, num_workers, timing, collector)

    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ConfigError(
            f"trainer.drop_last=true with trainer.batch_size={cfg.batch_size} leaves no batch of the "
            f"{len(train_data)} training images; lower trainer.batch_size or set trainer.drop_last=false"
        )
    set_lr = _schedule(cfg, optimizer, steps_per_epoch)
    probe = None if cfg.compile else StepProbe(model, optimizer, device)
    history: list[dict[str, float]] = []
    epoch_times: list[tuple[float, int]] = []
    step, loss_value, status, message = 0, None, "success", ""
    first_epoch = 0
    if checkpoint is not None and (saved := checkpoint.restore(model, optimizer, generator, steps_per_epoch)):
        first_epoch, step, loss_value = saved["epoch"], saved["step"], saved["loss_value"]
        history, epoch_times = saved["history"], saved["epoch_times"]
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
    restored_epochs = len(epoch_times)
    t_start = time.perf_counter()
    epochs = range(first_epoch, cfg.total_epochs)
    if cfg.progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="train", unit="epoch", leave=False)
    for epoch in epochs:
        model.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        for images, labels in clock.wrap(loader):
            set_lr(epoch, step)
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            # the first step is measured (engine/costs.py: the hooks look, the numbers are the same)
            measuring = probe is not None and probe.costs is None
            with probe.measure(labels.numel()) if measuring else contextlib.nullcontext():
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits = inputs.forward(images)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
                finite = bool(torch.isfinite(loss))
                if finite:
                    optimizer.zero_grad(set_to_none=True)
                    _backward_and_step(loss, optimizer, params, cfg.grad_clip, scaler)
            if not finite:
                status = "diverged"
                message = f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1}"
                break
            step += 1
            seen += labels.numel()
            loss_sum += loss.item() * labels.numel()
        if status == "diverged":
            break
        sync(device)
        epoch_times.append((time.perf_counter() - t0, seen))
        loss_value = loss_sum / max(seen, 1)
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_value, "lr": optimizer.param_groups[0]["lr"],
                                  "data_wait_s": clock.epochs[-1]}
        if cfg.evaluates_after(epoch):
            record["eval_accuracy"] = run_eval()
            history.append({"epoch": epoch + 1, "eval_accuracy": record["eval_accuracy"]})
        if log is not None:
            log(record)
        if cfg.progress:
            epochs.set_postfix(loss=f"{loss_value:.4f}")  # type: ignore[union-attr]
        if checkpoint is not None:
            loop_state = {"epoch": epoch + 1, "step": step, "loss_value": loss_value, "history": history,
                          "epoch_times": epoch_times, "scaler": scaler.state_dict() if scaler else None}
            checkpoint.save(model, optimizer, generator, steps_per_epoch, loop_state, epoch + 1 == cfg.total_epochs)
    train_seconds = time.perf_counter() - t_start + setup_seconds
    costs = probe.costs if probe is not None else None
    accuracy = predictions = None
    timing: list[tuple[int, float]] = []
    if status == "success":
        collector = PredictionCollector(cfg.predictions_topk)  # calibration always; the file if save_predictions
        accuracy = run_eval(timing, collector)
        predictions = collector.result()
        history.append({"epoch": cfg.total_epochs, "eval_accuracy": accuracy})
        if log is not None:
            log({"epoch": cfg.total_epochs, "eval_accuracy": accuracy, "final": True})
    return TrainOutcome(
        status=status,
        accuracy=accuracy,
        epochs_completed=len(epoch_times),
        final_train_loss=loss_value if loss_value is None or math.isfinite(loss_value) else None,
        train_img_s=_steady_throughput(epoch_times),
        peak_train_mem_mb=costs.peak_train_mem_mb if costs else None,
        peak_train_mem_source=costs.peak_train_mem_source if costs else "not measured (torch.compile, or no step ran)",
        train_seconds=train_seconds,
        eval_history=history,
        message=message,
        data_wait_fraction=data_wait_fraction(clock.epochs, [t for t, _ in epoch_times[restored_epochs:]]),
        input_pipeline=inputs.record,
        eval_infer_img_s=sum(n for n, _ in timing) / sum(t for _, t in timing) if timing else None,
        step_costs=costs,
        predictions=predictions,
    )


def _schedule(cfg: TrainerConfig, optimizer: torch.optim.Optimizer,
              steps_per_epoch: int) -> Callable[[int, int], None]:
    """``set_lr(epoch, step)``, called before every step: the learning rate of ``trainer.lr_schedule``.

    ``per_step``: linear warmup and cosine decay as functions of the global step (:func:`lr_at`).
    ``per_epoch``: timm's ``CosineLRScheduler`` as timm's train.py drives it (``t_in_epochs``, set at the start of
    every epoch, constant within it: warmup from ``warmup_lr``, then cosine over ``trainer.epochs`` counted from
    epoch 0, then ``min_lr``); ``warmup_prefix`` runs the cosine over the epochs after the warmup instead, and
    ``lr_schedule_lag`` delays the schedule by whole epochs. Both hold ``min_lr`` through the cooldown epochs.
    """
    peak = cfg.peak_lr
    if cfg.lr_schedule == "per_epoch":
        from timm.scheduler import CosineLRScheduler

        length = cfg.cosine_epochs or cfg.epochs
        cosine_epochs = length - cfg.warmup_epochs if cfg.warmup_prefix else length
        scheduler = CosineLRScheduler(optimizer, t_initial=max(cosine_epochs, 1), lr_min=cfg.min_lr,
                                      warmup_t=cfg.warmup_epochs, warmup_lr_init=cfg.warmup_lr,
                                      warmup_prefix=cfg.warmup_prefix, cycle_limit=1, t_in_epochs=True)
        current = [-1]

        def per_epoch(epoch: int, step: int) -> None:
            if epoch != current[0]:
                scheduler.step(max(epoch - cfg.lr_schedule_lag, 0))
                current[0] = epoch

        return per_epoch
    total_steps, warmup_steps = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch

    def per_step(epoch: int, step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, warmup_steps, peak, cfg.warmup_lr, cfg.min_lr)

    return per_step


def _backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                       grad_clip: float, scaler: torch.amp.GradScaler | None) -> None:
    """Backward and one optimizer step; with a gradient scaler (fp16), gradients are unscaled before clipping and
    a step whose gradients overflowed is skipped (the scaler lowers its scale), as torch's AMP recipe does."""
    if scaler is None:
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()


def _decoded_eval_split(data: Dataset, cfg: TrainerConfig, device: torch.device, workers: int,
                        record: dict[str, Any]) -> Dataset:
    """The evaluation split decoded once when ``trainer.input_cache`` allows and it fits, else ``data``."""
    if not (cfg.input_cache and is_cacheable(data)):
        return data
    cached, decision = decode_split(data, device, workers)  # type: ignore[arg-type]
    record["eval_input_cache"] = decision.to_dict()
    return cached if cached is not None else data


def _steady_throughput(epoch_times: list[tuple[float, int]]) -> float | None:
    """Images/s over all epochs but the first (warm-up: allocator, caches, lazy init)."""
    steady = epoch_times[1:] if len(epoch_times) > 1 else epoch_times
    seconds = sum(t for t, _ in steady)
    images = sum(n for _, n in steady)
    return images / seconds if seconds > 0 else None
