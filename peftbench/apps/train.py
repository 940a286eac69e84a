"""One run: backbone x method x dataset -> trained model -> one result JSON (``peftbench-train``).

The spec and the model come from the run spine (:mod:`peftbench.assemble`); the result is a typed
:class:`~peftbench.records.RunRecord`, written when the run starts, when it ends and when it fails.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import torch

from peftbench.assemble import (
    Assembled,
    RunSpec,
    assemble,
    build_plain_backbone,
    make_method,
    parse_spec,
    set_up_runtime,
)
from peftbench.data import image_ids
from peftbench.engine.checkpoint import EpochCheckpoint
from peftbench.engine.costs import StepCosts
from peftbench.engine.loop import TrainerConfig, train_and_evaluate
from peftbench.engine.measure import code_version, device_name, inference_throughput, library_versions
from peftbench.engine.predictions import ECE_BINS, PREDICTIONS_FILE, Predictions
from peftbench.errors import MethodNotSupportedError, RunExistsError
from peftbench.identity import weights_sha256
from peftbench.loggers import RunLogger
from peftbench.methods.task_checkpoint import save_task_checkpoint
from peftbench.records import (
    RESULT_FILE,
    CalibrationMetrics,
    CostMetrics,
    InferenceMetrics,
    MaxEval,
    MergeMetrics,
    PeriodicEval,
    Provenance,
    RecordError,
    RunIdentity,
    RunRecord,
    SplitInfo,
    TrainMetrics,
    read_record,
    write_record,
)
from peftbench.tuning.study import RunPruned, TrialReporter

DEFAULT_INFER_ITERS = 5  # timed calls where trainer.infer_iters=0 cannot use the final evaluation


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def dry_run(spec: RunSpec) -> dict[str, Any]:
    """What ``dry_run=true`` prints: the run's resolved ``config`` block (as its result JSON will hold it), what
    the per-task table set, the adjustments, and where the result would go. Nothing is trained, read or loaded."""
    return {
        "config": spec.config,
        "per_task": dataclasses.asdict(spec.per_task),
        "adjustments": spec.adjustments,
        "config_hash": spec.config_hash,
        "precision": spec.precision,
        "run_dir": str(spec.run_dir),
    }


def run(cfg: Any, command_line: list[str] | None = None) -> RunRecord | None:
    """Train and evaluate one backbone x method x dataset; write and return its result record.

    A finished run (same config hash) is skipped, refused or replaced according to ``on_existing``;
    a replaced result is kept as ``result.json.bak-<time>``. Diverged runs are recorded with status
    ``diverged``; a crash is recorded as ``failed`` before the error propagates. With ``dry_run=true`` it prints
    the resolved config (:func:`dry_run`) as one JSON object and returns None. ``command_line``: the overrides
    ``cfg`` was composed with, whose keys win over a recipe's per-task values (None: the running Hydra job's).
    A peftbench-tune trial run (``trial.storage`` set) that its study's pruner stops is recorded with status
    ``pruned``.
    """
    spec = parse_spec(cfg, command_line)
    if spec.dry_run:
        print(json.dumps(dry_run(spec), indent=2, default=str))
        return None
    for line in [spec.per_task.describe()] * (spec.per_task.source != "none") + spec.adjustments:
        print(f"[peftbench] {line}")
    chash = spec.config_hash
    out = spec.run_dir
    result_path = out / RESULT_FILE
    if result_path.exists():
        previous = _read_previous(result_path)
        if previous is not None and previous.status == "success":
            if spec.on_existing == "skip":
                print(f"[peftbench] finished run exists, skipped: {result_path} (on_existing=overwrite to rerun)")
                return previous
            if spec.on_existing == "error":
                raise RunExistsError(
                    f"a finished run with the same config exists at {result_path}; "
                    "pass on_existing=skip to keep it or on_existing=overwrite to rerun (the old result is kept as a backup)"
                )
            EpochCheckpoint(out, spec.resume).discard()  # overwrite retrains; a kept checkpoint would resume
        backup = result_path.with_name(f"{RESULT_FILE}.bak-{dt.datetime.now():%Y%m%d-%H%M%S}")
        result_path.rename(backup)
        print(f"[peftbench] previous result moved to {backup}")

    method = make_method(spec.method, spec.dataset.name, spec.dataset.suite, spec.trainer.merge)
    runtime = set_up_runtime(spec.trainer, spec.seed)
    started, t0 = _now(), time.perf_counter()
    record = RunRecord(
        status="running",
        message="",
        identity=RunIdentity(
            suite=spec.dataset.suite,
            task=spec.dataset.name,
            group=spec.dataset.group,
            backbone=spec.backbone.name,
            backbone_weights_sha256=weights_sha256(spec.backbone.weights),
            method=spec.method.label,
            registered_method=method.name,
            family=method.family,
            subfamily=method.subfamily,
            protocol=spec.protocol,
            seed=spec.seed,
            config_hash=chash,
            precision=spec.precision,
        ),
        provenance=Provenance(
            run_dir=str(out),
            started_at=started,
            code_version=code_version(),
            versions=library_versions(),
            device=device_name(runtime.device),
            config=spec.config,
            method_config=dataclasses.asdict(method.config),
        ),
        per_task=spec.per_task if spec.per_task.source != "none" else None,
        adjustments=spec.adjustments or None,
    )
    write_record(record)
    try:
        resuming = EpochCheckpoint(out, spec.resume).saved_epoch() > 0
        a = assemble(spec, runtime=runtime, method=method, run_folder=out, resuming=resuming)
        record.selection = a.selection  # methods that select on the training split (SCT, GPS), else None
        _train(a, out, record)
    except (Exception, KeyboardInterrupt) as exc:
        record.status, record.message, record.finished_at = "failed", f"{type(exc).__name__}: {exc}", _now()
        record.metrics.wall_seconds = time.perf_counter() - t0
        write_record(record)
        raise
    record.metrics.wall_seconds = time.perf_counter() - t0
    record.finished_at = _now()
    write_record(record)
    EpochCheckpoint(out, spec.resume).finish()  # finished (success or diverged): nothing left to resume
    return record


def _read_previous(path: Path) -> RunRecord | None:
    try:
        return read_record(path)
    except (OSError, RecordError):
        return None


def _train(a: Assembled, out: Path, record: RunRecord) -> None:
    spec, model, splits, device = a.spec, a.model, a.data(), a.runtime.device
    record.splits = SplitInfo(splits.train_split, splits.eval_split, splits.manifest_sha256, splits.normalization)
    record.metrics.counts = a.counts
    checkpoint = EpochCheckpoint(out, spec.resume)
    logger = RunLogger(out, spec.logger, run_name=out.relative_to(spec.results_dir).as_posix(), config=spec.config,
                       keep_epochs=checkpoint.saved_epoch())
    # a trial run reports each periodic evaluation to its study; the pruner's stop arrives as RunPruned
    log = TrialReporter(spec.trial).wrap(logger.log) if spec.trial.active else logger.log
    try:
        outcome = train_and_evaluate(
            model, splits.train, splits.eval, spec.trainer, spec.optim, device, spec.seed, spec.data.num_workers,
            log, checkpoint=checkpoint,
        )
    except RunPruned as pruned:  # a finished outcome of the trial (not a failure): no test, no costs
        record.status, record.message = "pruned", str(pruned)
        best = max(h["eval_accuracy"] for h in pruned.history)
        record.metrics.periodic_eval = PeriodicEval(best, pruned.history)
        record.resumed_from_epoch = checkpoint.resumed_from or None
        logger.finish({"max_eval_accuracy_during_training": best})
        return
    if checkpoint.resumed_from:
        record.resumed_from_epoch = checkpoint.resumed_from
    metrics = record.metrics
    metrics.train = TrainMetrics(
        accuracy=outcome.accuracy,
        accuracy_split=splits.eval_split,
        epochs_completed=outcome.epochs_completed,
        final_train_loss=outcome.final_train_loss,
        train_img_s=outcome.train_img_s,
        peak_train_mem_mb=outcome.peak_train_mem_mb,
        peak_train_mem_source=outcome.peak_train_mem_source,
        train_seconds=outcome.train_seconds,
        data_wait_fraction=outcome.data_wait_fraction,
    )
    record.input_pipeline = outcome.input_pipeline  # input / prefix cache decisions (engine/prefix_cache.py)
    if spec.trainer.eval_every or spec.trainer.eval_epochs:
        # Not the headline: the maximum over periodic evaluations on the evaluation split, which
        # several public scripts report; kept apart so it is never mistaken for `accuracy`.
        metrics.periodic_eval = PeriodicEval(max(h["eval_accuracy"] for h in outcome.eval_history),
                                             outcome.eval_history)
    if outcome.status == "success" and outcome.eval_history:
        best = max(outcome.eval_history, key=lambda h: h["eval_accuracy"])  # the earliest of equal maxima
        metrics.max_eval = MaxEval(best["eval_accuracy"], int(best["epoch"]),
                                   [int(h["epoch"]) for h in outcome.eval_history])
    record.status, record.message = outcome.status, outcome.message
    if outcome.status == "success":
        trainer, dtype = spec.trainer, a.runtime.dtype
        from_eval = trainer.infer_iters == 0 and outcome.eval_infer_img_s is not None
        # one evaluation batch, decoded only where a separate measurement or the merge check needs it
        batch = None if from_eval and not trainer.merge else _throughput_batch(splits.eval, trainer.eval_batch_size)
        if from_eval:
            infer_img_s = outcome.eval_infer_img_s
            source = "final evaluation: model calls of its batches after the first"
        else:
            infer_img_s = inference_throughput(model, batch, device, dtype, trainer.infer_warmup,
                                               trainer.infer_iters or DEFAULT_INFER_ITERS)
            source = "separate: one evaluation batch, repeated"
        metrics.inference = InferenceMetrics(
            infer_img_s=infer_img_s,
            infer_img_s_source=source,
            infer_batch_size=min(trainer.eval_batch_size, len(splits.eval)),
            checkpoint_bytes=save_task_checkpoint(model, out / "task.safetensors"),
        )
        metrics.costs = _costs(a, outcome.step_costs)
        _record_predictions(outcome.predictions, splits.eval, trainer, out, record)
        if trainer.merge:
            metrics.merge = _merge_and_measure(a, batch, out)
    logger.finish({k: v for k, v in metrics.to_dict().items() if isinstance(v, (int, float))})


def _record_predictions(predictions: Predictions | None, data: Any, trainer: TrainerConfig, out: Path,
                        record: RunRecord) -> None:
    """The calibration block of the final evaluation, and ``predictions.npz`` with ``trainer.save_predictions``."""
    if predictions is None or predictions.nll is None or predictions.expected_calibration_error is None:
        return
    record.metrics.calibration = CalibrationMetrics(predictions.expected_calibration_error, ECE_BINS, predictions.nll)
    if trainer.save_predictions:
        predictions.save(out / PREDICTIONS_FILE, image_ids(data))


def _costs(a: Assembled, step: StepCosts | None) -> CostMetrics:
    """The trained model's FLOPs and batch-1 latency, with what the loop measured on its first step."""
    import copy

    from peftbench.engine.costs import forward_gflops, latency_ms
    from peftbench.engine.measure import sync

    device, dtype = a.runtime.device, a.runtime.dtype
    x = _throughput_batch(a.data().eval, 2).to(device)
    merged = None
    if a.method.mergeable:
        try:
            merged = forward_gflops(a.method.merge(copy.deepcopy(a.model)).to(device), x)
        except MethodNotSupportedError:  # a reparameterisation this backbone cannot absorb (a bias-free layer)
            merged = None
    return CostMetrics(
        saved_activation_mb=step.saved_activation_mb if step else None,
        saved_activation_mb_per_image=step.saved_activation_mb_per_image if step else None,
        train_state_mb=step.train_state_mb if step else None,
        train_step_gflops=step.train_step_gflops if step else None,
        forward_gflops=forward_gflops(a.model, x),
        merged_forward_gflops=merged,
        latency_b1_ms=latency_ms(a.model, x[:1], device, dtype, sync=sync),
    )


def _throughput_batch(data, batch_size: int) -> torch.Tensor:
    n = min(batch_size, len(data))
    return torch.stack([data[i][0] for i in range(n)])


def _merge_and_measure(a: Assembled, batch: torch.Tensor, out: Path) -> MergeMetrics:
    """Merge a reparameter method into a plain backbone; measure it against the untouched backbone."""
    from safetensors.torch import save_file

    from peftbench.atomic import atomic_path

    spec, model, device, dtype = a.spec, a.model, a.runtime.device, a.runtime.dtype
    model.eval()
    with torch.inference_mode():
        before = model(batch.to(device)).float()
    merged = a.method.merge(model).to(device).eval()
    with torch.inference_mode():
        diff = (merged(batch.to(device)).float() - before).abs().max().item()
    base = build_plain_backbone(spec.backbone, spec.dataset.num_classes, weights=False).to(device)
    timing = (spec.trainer.infer_warmup, spec.trainer.infer_iters or DEFAULT_INFER_ITERS)
    base_img_s = inference_throughput(base, batch, device, dtype, *timing)
    merged_img_s = inference_throughput(merged, batch, device, dtype, *timing)
    state = {k: v.detach().cpu().contiguous() for k, v in merged.state_dict().items()}
    with atomic_path(out / "merged.safetensors") as tmp:
        save_file(state, str(tmp))
    return MergeMetrics(
        merge_max_abs_diff=diff,
        base_infer_img_s=base_img_s,
        merged_infer_img_s=merged_img_s,
        merged_infer_over_base=merged_img_s / base_img_s,
    )
