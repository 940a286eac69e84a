"""Re-score a finished run (``peftbench-eval``): its trained tensors on one split or a folder of images.

The model comes back through :mod:`peftbench.apps.trained` (the run spine with ``task.safetensors`` loaded),
and is evaluated by the training loop's own :func:`~peftbench.engine.loop.evaluate` at the run's evaluation
batch size and resolved precision, so on the run's split and device type the accuracy is the one it recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftbench.apps.trained import open_run, rebuild
from peftbench.data import build_split, image_folder, image_ids, split_names
from peftbench.engine.loop import evaluate
from peftbench.engine.predictions import ECE_BINS, PredictionCollector
from peftbench.errors import ConfigError, DataError


def rescore(run: str | Path, split: str | None = None, images: str | Path | None = None,
            data_root: str | None = None, device: str = "auto", predictions: str | Path | None = None,
            topk: int = 5, overwrite: bool = False, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a finished run again.

    Args:
        run: the run folder or its ``result.json``.
        split: a split of the run's task (default: the one its accuracy was measured on).
        images: a folder of images instead of a split (no labels: predictions only, ``accuracy`` None).
        data_root: where the data is now (default: the recorded ``data.root``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        predictions: also write per-image top-``topk`` classes and probabilities to this ``.npz``.
        topk: classes kept per image in ``predictions``.
        overwrite: replace an existing ``predictions`` file.
        checkpoint: a task checkpoint to score instead of the run's ``task.safetensors``.

    Returns:
        One JSON-ready dict: ``accuracy`` (top-1 %), ``expected_calibration_error`` (%), ``nll``, the split, the
        image count, what the run recorded and whether it matches.

    Raises:
        ConfigError / DataError / CheckpointError: bad input, before anything is written.
    """
    if split is not None and images is not None:
        raise ConfigError("give --split or --images, not both")
    if topk < 1:
        raise ConfigError(f"--topk must be >= 1, got {topk}")
    out_file = None
    if predictions is not None:
        out_file = Path(predictions).expanduser()
        if out_file.suffix != ".npz":
            raise ConfigError(f"--predictions {out_file}: the file is a numpy archive, name it <something>.npz")
        if out_file.exists() and not overwrite:
            raise DataError(f"--predictions {out_file} exists; choose another file or pass --overwrite to replace it")
    trained = open_run(run)
    record = trained.record
    recorded_split = record.metrics.train.accuracy_split if record.metrics.train is not None else None
    dataset_cfg = record.provenance.config.get("dataset", {})
    if split is not None and split not in split_names(dataset_cfg.get("suite", "")):
        # checked before the model is built: a typo costs nothing
        raise ConfigError(f"--split {split!r} is not a split of the {dataset_cfg.get('suite')} task "
                          f"{dataset_cfg.get('name')!r}; valid choices: {', '.join(split_names(dataset_cfg.get('suite', '')))}")
    a = rebuild(trained, data_root=data_root, device=device, checkpoint=checkpoint)
    spec, mean, std = a.spec, tuple(a.data_config["mean"]), tuple(a.data_config["std"])
    if images is not None:
        data = image_folder(images, spec.dataset, spec.data, mean, std)
        used_split = None
    else:
        used_split = split or recorded_split or "test"
        data = build_split(spec.dataset, spec.data, used_split, mean, std)
    collector = PredictionCollector(topk)
    model = a.model.to(a.runtime.device)
    accuracy = evaluate(model, data, spec.trainer.eval_batch_size, a.runtime.device, a.runtime.dtype,
                        spec.data.num_workers, collector=collector)
    result = collector.result()
    labelled = images is None
    recorded = record.accuracy if used_split is not None and used_split == recorded_split else None
    if out_file is not None:
        result.save(out_file, image_ids(data))
    return {
        "run": str(trained.folder),
        "split": used_split,
        "images": str(images) if images is not None else None,
        "num_images": len(data),
        "accuracy": accuracy if labelled else None,
        "expected_calibration_error": result.expected_calibration_error,
        "ece_bins": ECE_BINS,
        "nll": result.nll,
        "recorded_accuracy": recorded,
        "matches_recorded": None if recorded is None else accuracy == recorded,
        "precision": spec.precision,
        "device": str(a.runtime.device),
        "predictions": str(out_file) if out_file is not None else None,
    }
