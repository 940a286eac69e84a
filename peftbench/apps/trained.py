"""A finished run, rebuilt: its record, its spec and its model with the trained tensors loaded back.

``peftbench-eval`` and ``peftbench-export`` start here. The model is built by the run spine
(:func:`peftbench.assemble.assemble`) from the config the run recorded, at the precision it resolved, then
``task.safetensors`` is loaded into it; nothing is re-derived by hand.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from peftbench.assemble import Assembled, assemble, parse_spec
from peftbench.errors import CheckpointError, DataError
from peftbench.identity import weights_sha256
from peftbench.methods.task_checkpoint import load_task_checkpoint
from peftbench.records import RESULT_FILE, RecordError, RunRecord, read_record

TASK_CHECKPOINT = "task.safetensors"


@dataclasses.dataclass
class TrainedRun:
    """A finished run's record and its folder."""

    record: RunRecord
    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / TASK_CHECKPOINT


def open_run(run: str | Path) -> TrainedRun:
    """The finished run at ``run`` (its folder or its ``result.json``).

    Raises:
        DataError: no such run, not a readable result, or a run that did not finish with ``success``.
        CheckpointError: the folder has no ``task.safetensors``.
    """
    path = Path(run).expanduser()
    result = path / RESULT_FILE if path.is_dir() else path
    if not result.is_file():
        raise DataError(f"{run}: no run here (expected a run folder holding {RESULT_FILE}, or that file); "
                        f"run folders are <results>/runs/<suite>/<task>/<backbone>/<method>/<protocol>-seed<N>-<hash>")
    try:
        record = read_record(result)
    except (OSError, RecordError) as exc:
        raise DataError(f"{result} is not a readable peftbench result: {exc}") from None
    if record.status != "success":
        raise DataError(f"{result}: the run's status is {record.status!r}, not 'success'; only a finished run "
                        "has trained weights to use (relaunch its command to finish it)")
    trained = TrainedRun(record, result.parent)
    if not trained.checkpoint.is_file():
        raise CheckpointError(
            f"run folder {trained.folder} has no {TASK_CHECKPOINT} (the tensors the run trained); it may have been "
            "copied without it. Copy the whole run folder, or rerun the run's command with on_existing=overwrite")
    return trained


def rebuild(run: TrainedRun, data_root: str | None = None, device: str | None = None,
            checkpoint: str | Path | None = None) -> Assembled:
    """The run's model as it was after training, on CPU, without data (``assemble(data=False)``).

    Args:
        run: from :func:`open_run`.
        data_root: replaces the recorded ``data.root`` (the folder the data was in when the run trained).
        device: replaces the recorded ``trainer.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        checkpoint: a task checkpoint to load instead of the run's ``task.safetensors``.

    Raises:
        CheckpointError: the backbone weights are missing or are not those the run trained on, or the task
            checkpoint does not fit the run's backbone and method.
    """
    config = copy.deepcopy(run.record.provenance.config)
    if data_root is not None:
        config.setdefault("data", {})["root"] = data_root
    if device is not None:
        config.setdefault("trainer", {})["device"] = device
    # compute at the precision the run resolved (trainer.precision=auto is fp32 on a CPU, bf16 on CUDA)
    if run.record.identity.precision is not None:
        config.setdefault("trainer", {})["precision"] = run.record.identity.precision
    config.setdefault("trainer", {})["progress"] = False
    spec = parse_spec(config)
    recorded = run.record.identity.backbone_weights_sha256
    if recorded is not None:
        current = weights_sha256(spec.backbone.weights)
        if current is not None and current != recorded:
            raise CheckpointError(
                f"backbone.weights={spec.backbone.weights} is not the file this run trained on (SHA-256 {current[:12]}... "
                f"now, {recorded[:12]}... recorded): the trained tensors only make sense on the run's own backbone. "
                "Put the original weights file back at that path")
    a = assemble(spec, data=False)
    path = Path(checkpoint).expanduser() if checkpoint is not None else run.checkpoint
    try:
        load_task_checkpoint(a.model, path)
    except CheckpointError as exc:
        raise CheckpointError(
            f"{exc}. The checkpoint was not trained with this run's backbone ({spec.backbone.name}) and method "
            f"({spec.method.label}); pass the run folder it belongs to") from None
    a.model.eval()
    return a
