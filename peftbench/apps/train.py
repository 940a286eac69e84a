"""One run: backbone x method x dataset -> trained model -> one result JSON.

This is the library call behind ``peftbench-train``; it takes the composed config, turns each block
into its typed config, and never reads a raw config key after that.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from pathlib import Path
from typing import Any

import torch

from peftbench.config import build_config, to_plain
from peftbench.data import DataConfig, build_splits
from peftbench.data import DatasetConfig as _DatasetConfig
from peftbench.engine.checkpoint import EpochCheckpoint, ResumeConfig
from peftbench.engine.loop import TrainerConfig, autocast_dtype, resolve_device, train_and_evaluate
from peftbench.engine.measure import code_version, device_name, inference_throughput, library_versions
from peftbench.engine.optim import OptimConfig
from peftbench.errors import ConfigError, PeftbenchError, RunExistsError
from peftbench.loggers import LoggerConfig, RunLogger
from peftbench.methods import build_method
from peftbench.methods.base import split_method_block, with_dataset_context
from peftbench.methods.prepare import prepare_model, save_task_checkpoint
from peftbench.models import backbone_data_config, build_backbone, make_backbone_config
from peftbench.results.io import (
    RESULT_FILE,
    SCHEMA_VERSION,
    config_hash,
    read_result,
    run_dir,
    weights_sha256,
    write_json_atomic,
)

PROTOCOLS = ("tune", "final")
DEFAULT_INFER_ITERS = 5  # timed calls where trainer.infer_iters=0 cannot use the final evaluation
ON_EXISTING = ("skip", "error", "overwrite")


@dataclasses.dataclass
class RunConfig:
    """Every block of a run, typed."""

    backbone: Any
    method_name: str
    method_label: str
    method_options: dict[str, Any]
    dataset: _DatasetConfig
    data: DataConfig
    trainer: TrainerConfig
    optim: OptimConfig
    logger: LoggerConfig
    seed: int | None
    protocol: str
    results_dir: Path
    on_existing: str
    resume: ResumeConfig = dataclasses.field(default_factory=ResumeConfig)


def parse_config(cfg: Any) -> tuple[RunConfig, dict[str, Any]]:
    """Typed blocks plus the resolved plain config (which goes into the result JSON)."""
    plain = to_plain(cfg)
    plain.pop("hydra", None)
    for key in ("backbone", "method", "dataset", "data", "trainer", "optim", "logger", "protocol", "seed"):
        if key not in plain:
            raise ConfigError(f"the config has no '{key}' block; compose it from configs/train.yaml")
    if plain["protocol"] not in PROTOCOLS:
        raise ConfigError(f"protocol={plain['protocol']!r}; valid choices: {', '.join(PROTOCOLS)}")
    if plain.get("on_existing", "skip") not in ON_EXISTING:
        raise ConfigError(f"on_existing={plain['on_existing']!r}; valid choices: {', '.join(ON_EXISTING)}")
    method_name, method_label, method_options = split_method_block(plain["method"])
    run = RunConfig(
        backbone=make_backbone_config(plain["backbone"]),
        method_name=method_name,
        method_label=method_label,
        method_options=method_options,
        dataset=build_config(_DatasetConfig, plain["dataset"], "dataset"),
        data=build_config(DataConfig, plain["data"], "data"),
        trainer=build_config(TrainerConfig, plain["trainer"], "trainer"),
        optim=build_config(OptimConfig, plain["optim"], "optim"),
        logger=build_config(LoggerConfig, plain["logger"], "logger"),
        seed=plain["seed"],
        protocol=plain["protocol"],
        results_dir=Path(plain.get("paths", {}).get("results_dir", "results")),
        on_existing=plain.get("on_existing", "skip"),
        resume=build_config(ResumeConfig, plain.get("resume", {}), "resume"),
    )
    return run, plain


def seed_everything(seed: int | None) -> None:
    """Seed Python, NumPy and torch (no-op for ``None``)."""
    if seed is None:
        return
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run(cfg: Any) -> dict[str, Any]:
    """Train and evaluate one backbone x method x dataset; write and return its result JSON.

    A finished run (same config hash) is skipped, refused or replaced according to ``on_existing``;
    a replaced result is kept as ``result.json.bak-<time>``. Diverged runs are recorded with status
    ``diverged``; a crash is recorded as ``failed`` before the error propagates.
    """
    rc, plain = parse_config(cfg)
    chash = config_hash(plain)
    out = run_dir(rc.results_dir, plain, chash)
    result_path = out / RESULT_FILE
    if result_path.exists():
        previous = _read_previous(result_path)
        if previous is not None and previous.get("status") == "success":
            if rc.on_existing == "skip":
                print(f"[peftbench] finished run exists, skipped: {result_path} (on_existing=overwrite to rerun)")
                return previous
            if rc.on_existing == "error":
                raise RunExistsError(
                    f"a finished run with the same config exists at {result_path}; "
                    "pass on_existing=skip to keep it or on_existing=overwrite to rerun (the old result is kept as a backup)"
                )
            EpochCheckpoint(out, rc.resume).discard()  # overwrite retrains; a kept checkpoint would resume
        backup = result_path.with_name(f"{RESULT_FILE}.bak-{dt.datetime.now():%Y%m%d-%H%M%S}")
        result_path.rename(backup)
        print(f"[peftbench] previous result moved to {backup}")

    options = with_dataset_context(rc.method_name, rc.method_options, rc.dataset.name, rc.dataset.suite)
    method = build_method(rc.method_name, options)
    if rc.trainer.merge and not method.mergeable:
        raise ConfigError(
            f"trainer.merge=true but method {method.name!r} is not mergeable; drop trainer.merge or pick a "
            "reparameter method (e.g. lora, ssf, repadapter, fact_tt)"
        )
    if rc.trainer.num_threads > 0:
        torch.set_num_threads(rc.trainer.num_threads)
    device = resolve_device(rc.trainer.device)
    seed_everything(rc.seed)
    started, t0 = _now(), time.perf_counter()
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "message": "",
        "suite": rc.dataset.suite,
        "task": rc.dataset.name,
        "group": rc.dataset.group,
        "backbone": rc.backbone.name,
        "backbone_weights_sha256": weights_sha256(rc.backbone.weights),  # local files only (None: hub / none)
        "method": rc.method_label,  # the registered name unless the method block sets a label (presets)
        "registered_method": method.name,
        "family": method.family,
        "subfamily": method.subfamily,
        "protocol": rc.protocol,
        "seed": rc.seed,
        "config_hash": chash,
        "run_dir": str(out),
        "started_at": started,
        "code_version": code_version(),
        "versions": library_versions(),
        "device": device_name(device),
        "config": plain,
        # the method's typed config as used (e.g. with the task filled in for per-task settings)
        "method_config": dataclasses.asdict(method.config),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(result_path, result)
    try:
        _train(rc, method, device, out, result, plain)
    except (Exception, KeyboardInterrupt) as exc:
        result.update(status="failed", message=f"{type(exc).__name__}: {exc}", finished_at=_now())
        result["metrics"] = {**result.get("metrics", {}), "wall_seconds": time.perf_counter() - t0}
        write_json_atomic(result_path, result)
        raise
    result["metrics"]["wall_seconds"] = time.perf_counter() - t0
    result["finished_at"] = _now()
    write_json_atomic(result_path, result)
    EpochCheckpoint(out, rc.resume).finish()  # finished (success or diverged): nothing left to resume
    return result


def _read_previous(path: Path) -> dict[str, Any] | None:
    try:
        return read_result(path)
    except (OSError, ValueError):
        return None


def _train(rc: RunConfig, method, device: torch.device, out: Path, result: dict[str, Any], plain: dict) -> None:
    model = build_backbone(rc.backbone, rc.dataset.num_classes)
    data_cfg = backbone_data_config(model)
    counts = prepare_model(model, method)
    splits = build_splits(rc.dataset, rc.data, rc.protocol, tuple(data_cfg["mean"]), tuple(data_cfg["std"]))
    result.update(
        train_split=splits.train_split,
        eval_split=splits.eval_split,
        manifest_sha256=splits.manifest_sha256,
        normalization=splits.normalization,
        metrics={**counts.to_dict()},
    )
    n_opt = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n_opt != counts.trainable_params:  # the optimizer sees exactly the counted parameters
        raise RuntimeError(f"optimizer would hold {n_opt} parameters, counted {counts.trainable_params}")
    checkpoint = EpochCheckpoint(out, rc.resume)
    logger = RunLogger(out, rc.logger, run_name=out.relative_to(rc.results_dir).as_posix(), config=plain,
                       keep_epochs=checkpoint.saved_epoch())
    outcome = train_and_evaluate(
        model, splits.train, splits.eval, rc.trainer, rc.optim, device, rc.seed, rc.data.num_workers, logger.log,
        checkpoint=checkpoint,
    )
    if checkpoint.resumed_from:
        result["resumed_from_epoch"] = checkpoint.resumed_from
    metrics = result["metrics"]
    metrics.update(
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
    result["input_pipeline"] = outcome.input_pipeline  # input / prefix cache decisions (engine/prefix_cache.py)
    if rc.trainer.eval_every:
        # Not the headline: the maximum over periodic evaluations on the evaluation split, which
        # several public scripts report; kept apart so it is never mistaken for `accuracy`.
        metrics["max_eval_accuracy_during_training"] = max(h["eval_accuracy"] for h in outcome.eval_history)
        metrics["eval_history"] = outcome.eval_history
    result.update(status=outcome.status, message=outcome.message)
    if outcome.status == "success":
        dtype = autocast_dtype(rc.trainer, device)
        from_eval = rc.trainer.infer_iters == 0 and outcome.eval_infer_img_s is not None
        # one evaluation batch, decoded only where a separate measurement or the merge check needs it
        batch = None if from_eval and not rc.trainer.merge else _throughput_batch(splits.eval, rc.trainer.eval_batch_size)
        if from_eval:
            metrics["infer_img_s"] = outcome.eval_infer_img_s
            metrics["infer_img_s_source"] = "final evaluation: model calls of its batches after the first"
        else:
            metrics["infer_img_s"] = inference_throughput(model, batch, device, dtype, rc.trainer.infer_warmup,
                                                          rc.trainer.infer_iters or DEFAULT_INFER_ITERS)
            metrics["infer_img_s_source"] = "separate: one evaluation batch, repeated"
        metrics["infer_batch_size"] = min(rc.trainer.eval_batch_size, len(splits.eval))
        metrics["checkpoint_bytes"] = save_task_checkpoint(model, out / "task.safetensors")
        if rc.trainer.merge:
            metrics.update(_merge_and_measure(rc, method, model, batch, device, dtype, out))
    logger.finish({k: v for k, v in metrics.items() if isinstance(v, (int, float))})


def _throughput_batch(data, batch_size: int) -> torch.Tensor:
    n = min(batch_size, len(data))
    return torch.stack([data[i][0] for i in range(n)])


def _merge_and_measure(rc: RunConfig, method, model, batch, device, dtype, out: Path) -> dict[str, Any]:
    """Merge a reparameter method into a plain backbone; measure it against the untouched backbone."""
    from safetensors.torch import save_file

    model.eval()
    with torch.inference_mode():
        before = model(batch.to(device)).float()
    merged = method.merge(model).to(device).eval()
    with torch.inference_mode():
        diff = (merged(batch.to(device)).float() - before).abs().max().item()
    base = build_backbone(dataclasses.replace(rc.backbone, weights="none"), rc.dataset.num_classes).to(device)
    timing = (rc.trainer.infer_warmup, rc.trainer.infer_iters or DEFAULT_INFER_ITERS)
    base_img_s = inference_throughput(base, batch, device, dtype, *timing)
    merged_img_s = inference_throughput(merged, batch, device, dtype, *timing)
    state = {k: v.detach().cpu().contiguous() for k, v in merged.state_dict().items()}
    save_file(state, str(out / "merged.safetensors"))
    return {
        "merge_max_abs_diff": diff,
        "base_infer_img_s": base_img_s,
        "merged_infer_img_s": merged_img_s,
        "merged_infer_over_base": merged_img_s / base_img_s,
    }


def user_error_exit(exc: PeftbenchError) -> SystemExit:
    """Print a user error without a traceback and return the SystemExit to raise (code 2)."""
    import sys

    print(f"peftbench: error: {exc}", file=sys.stderr)
    return SystemExit(2)
