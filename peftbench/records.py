"""The typed record of one run (its ``result.json``) and the one reader and writer of it.

No torch here: the leaderboard reads results on machines without the GPU stack. Every key a result JSON has
had since schema 1 is kept, in the same order; keys this version does not know (written by another version)
are carried through a read-modify-write unchanged.

A run's identity (its config hash, run folder and the keys left out of them) is in :mod:`peftbench.identity`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peftbench.atomic import write_json_atomic
from peftbench.identity import RESULT_FILE
from peftbench.per_task import PerTaskResolution

# 2: resolved precision in the identity, `precision` recorded, a `costs` metric block, and peak_train_mem_mb
# measured on one training step (engine/costs.py) instead of the process's RSS (1: read as it is)
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
RUNNING_STATUS = "running"  # written before training starts
# pruned: a peftbench-tune trial run stopped early by the study's pruner (a finished outcome, not a failure)
STATUSES = ("running", "success", "diverged", "failed", "pruned")
PRUNED_STATUS = "pruned"
REQUIRED_KEYS = ("suite", "task", "backbone", "method", "protocol")
REQUIRED_SUCCESS_METRICS = ("accuracy", "trainable_params", "trainable_params_without_head")

class RecordError(ValueError):
    """A file that is not a usable peftbench result (the message says why)."""


# -- the record's blocks ----------------------------------------------------------------------------------
@dataclasses.dataclass
class ParamCounts:
    """Parameter counts of a prepared model.

    ``backbone_params`` counts the pretrained backbone without its head (before the method was applied);
    ``trainable_percent`` is ``trainable_params_without_head / backbone_params * 100``, the convention of the
    VTAB-1k tables.
    """

    trainable_params: int
    trainable_params_without_head: int
    head_params: int
    total_params: int
    backbone_params: int
    trainable_percent: float

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TrainMetrics:
    """What the training loop measured; ``accuracy`` (top-1 %, last epoch) is the headline."""

    accuracy: float | None
    accuracy_split: str
    epochs_completed: int
    final_train_loss: float | None
    train_img_s: float | None
    peak_train_mem_mb: float | None
    peak_train_mem_source: str
    train_seconds: float
    data_wait_fraction: float | None


@dataclasses.dataclass
class PeriodicEval:
    """``trainer.eval_every``: the evaluations during training (not the headline)."""

    max_eval_accuracy_during_training: float
    eval_history: list[dict[str, float]]


@dataclasses.dataclass
class MaxEval:
    """The best evaluation over the evaluated epochs (``trainer.eval_epochs`` / ``eval_every`` and the last one):
    the number sources that report "max test accuracy over checkpoints" print. Never the headline."""

    max_eval_accuracy: float
    max_eval_epoch: int  # epochs completed when it was measured
    evaluated_epochs: list[int]


@dataclasses.dataclass
class CostMetrics:
    """Memory and FLOPs that compare across methods and devices (see :mod:`peftbench.engine.costs`)."""

    saved_activation_mb: float | None  # saved for backward by one training step (batch of the run)
    saved_activation_mb_per_image: float | None
    train_state_mb: float | None  # trainable parameters + gradients + optimizer state
    train_step_gflops: float | None  # per image, the step the trainer ran (a cached prefix is not recomputed)
    forward_gflops: float | None  # per image, the adapted model's full forward pass
    merged_forward_gflops: float | None  # per image, after merging (mergeable methods; else None)
    latency_b1_ms: float | None  # median eval forward pass of one image


@dataclasses.dataclass
class InferenceMetrics:
    """Inference throughput of the trained model and the size of its task checkpoint."""

    infer_img_s: float | None
    infer_img_s_source: str
    infer_batch_size: int
    checkpoint_bytes: int


@dataclasses.dataclass
class MergeMetrics:
    """``trainer.merge``: the merged model against the unmerged one and the plain backbone."""

    merge_max_abs_diff: float
    base_infer_img_s: float
    merged_infer_img_s: float
    merged_infer_over_base: float


@dataclasses.dataclass
class CalibrationMetrics:
    """How well the final evaluation's probabilities are calibrated (:mod:`peftbench.engine.predictions`)."""

    expected_calibration_error: float  # percent, ece_bins equal-width bins of the top-1 confidence (Guo et al. 2017)
    ece_bins: int
    nll: float  # mean negative log-likelihood of the true class (nats per image)


_METRIC_BLOCKS: tuple[tuple[str, type], ...] = (
    ("counts", ParamCounts),
    ("train", TrainMetrics),
    ("periodic_eval", PeriodicEval),
    ("max_eval", MaxEval),
    ("inference", InferenceMetrics),
    ("costs", CostMetrics),
    ("merge", MergeMetrics),
    ("calibration", CalibrationMetrics),
)


def _keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@dataclasses.dataclass
class Metrics:
    """The ``metrics`` block: typed sub-blocks, each written whole or not at all, flattened on disk.

    ``extra`` holds keys this version does not know (carried through unchanged).
    """

    counts: ParamCounts | None = None
    train: TrainMetrics | None = None
    periodic_eval: PeriodicEval | None = None
    max_eval: MaxEval | None = None
    inference: InferenceMetrics | None = None
    costs: CostMetrics | None = None
    merge: MergeMetrics | None = None
    calibration: CalibrationMetrics | None = None
    wall_seconds: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for attr, _ in _METRIC_BLOCKS:
            block = getattr(self, attr)
            if block is not None:
                out.update(dataclasses.asdict(block))
        out.update(self.extra)
        if self.wall_seconds is not None:
            out["wall_seconds"] = self.wall_seconds
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Metrics:
        rest = dict(raw)
        blocks: dict[str, Any] = {}
        for attr, block_cls in _METRIC_BLOCKS:
            keys = _keys(block_cls)
            if all(k in rest for k in keys):
                blocks[attr] = block_cls(**{k: rest.pop(k) for k in keys})
        wall = rest.pop("wall_seconds", None)
        return cls(**blocks, wall_seconds=wall, extra=rest)


@dataclasses.dataclass
class RunIdentity:
    """What a run is: the leaderboard's row and column keys, and its config hash."""

    suite: str
    task: str
    group: str | None
    backbone: str
    backbone_weights_sha256: str | None  # local weights files only (None: hub / none)
    method: str  # the registered name unless the method block sets a label (presets)
    registered_method: str
    family: str
    subfamily: str
    protocol: str
    seed: int | None
    config_hash: str
    precision: str | None = None  # resolved: fp32 | bf16 (schema 2; part of the config hash)


@dataclasses.dataclass
class Provenance:
    """Where, when and with what a run was made; ``config`` is the resolved config it ran."""

    run_dir: str
    started_at: str
    code_version: str
    versions: dict[str, str]
    device: str
    config: dict[str, Any]
    method_config: dict[str, Any]  # the method's typed config as used (per-task values filled in)


@dataclasses.dataclass
class SplitInfo:
    """Which images the run trained and was evaluated on, and how they were normalised."""

    train_split: str
    eval_split: str
    manifest_sha256: str
    normalization: dict[str, Any]


@dataclasses.dataclass
class TuningBlock:
    """Added by peftbench-tune to a final run: how its setting was selected.

    ``candidates`` has one entry per trial of the study (its values, state, per-seed runs and validation
    accuracies, trainable parameters); ``selected_run`` is the first of ``selected_runs`` (one per tune seed).
    The fields after ``candidates`` were added with the Optuna study (results written before lack them).
    """

    search: str
    criterion: str
    selected: dict[str, Any]
    selected_run: str
    selected_val_accuracy: float
    candidates: list[dict[str, Any]]
    budget: int | None = None  # trials of the study, the same for every method of the tune
    trials: dict[str, int] = dataclasses.field(default_factory=dict)  # state -> count (complete, pruned)
    selected_trial: int | None = None
    selected_runs: list[str] = dataclasses.field(default_factory=list)
    tune_seeds: list[int] = dataclasses.field(default_factory=list)
    space: dict[str, Any] = dataclasses.field(default_factory=dict)  # knob -> choices or range
    max_params: int | None = None  # the parameter budget (trainable, without the head), if any
    study: dict[str, Any] = dataclasses.field(default_factory=dict)  # journal, name, sampler, pruner


@dataclasses.dataclass
class SearchBlock:
    """Added by peftbench-search to a final run: the searched architecture and the cost of each stage."""

    method: str
    preset: str
    settings: dict[str, Any]
    arch: dict[str, list[Any]]
    arch_file: str
    params: int
    budget_params: int
    param_limit: float
    val_accuracy: float
    supernet_val_accuracy_largest: float | None
    evaluations: int
    history: list[Any]
    search_dir: str
    cost: dict[str, Any]


@dataclasses.dataclass
class SelectionBlock:
    """Methods that select on the training data before training (SCT, GPS): what, on which split, how long.

    ``selected`` is the method's summary (SCT: the channels of every block; GPS: counts and a digest of the
    indices); the whole selection is ``file`` (``selection.safetensors`` in the run folder). ``restored``: a
    resumed run read it back from that file instead of selecting again (``seconds`` is the first launch's).
    """

    method: str
    criterion: str
    split: str
    images: int
    seconds: float
    device: str
    selected: dict[str, Any]
    file: str | None
    restored: bool = False


# top-level blocks a record has only when the run made them: (key, dataclass)
_OPTIONAL_BLOCKS: tuple[tuple[str, type], ...] = (
    ("tuning", TuningBlock), ("search", SearchBlock), ("per_task", PerTaskResolution), ("selection", SelectionBlock),
)
_IDENTITY_KEYS = _keys(RunIdentity)
_PROVENANCE_KEYS = _keys(Provenance)
_SPLIT_KEYS = _keys(SplitInfo)


@dataclasses.dataclass
class RunRecord:
    """One run's ``result.json``, typed. ``splits`` is None until the data is built; ``metrics`` grows as the
    run goes; ``extra`` holds top-level keys this version does not know."""

    status: str
    message: str
    identity: RunIdentity
    provenance: Provenance
    splits: SplitInfo | None = None
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    input_pipeline: dict[str, Any] | None = None
    resumed_from_epoch: int | None = None
    finished_at: str | None = None
    tuning: TuningBlock | None = None
    search: SearchBlock | None = None
    per_task: PerTaskResolution | None = None  # what a recipe's per-task table set (None: the config had none)
    adjustments: list[str] | None = None  # values changed so the run could run (e.g. a capped warmup)
    selection: SelectionBlock | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    # -- convenience ------------------------------------------------------------------------------------
    @property
    def accuracy(self) -> float | None:
        return self.metrics.train.accuracy if self.metrics.train is not None else None

    @property
    def path(self) -> Path:
        return Path(self.provenance.run_dir) / RESULT_FILE

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order every result has had them."""
        out: dict[str, Any] = {"schema_version": self.schema_version, "status": self.status, "message": self.message}
        out.update({k: v for k, v in dataclasses.asdict(self.identity).items()
                    if not (k == "precision" and v is None)})  # schema-1 results have none
        out.update(dataclasses.asdict(self.provenance))
        if self.splits is not None:
            out.update(dataclasses.asdict(self.splits))
        metrics = self.metrics.to_dict()
        if metrics or self.splits is not None:
            out["metrics"] = metrics
        if self.input_pipeline is not None:
            out["input_pipeline"] = self.input_pipeline
        if self.resumed_from_epoch is not None:
            out["resumed_from_epoch"] = self.resumed_from_epoch
        if self.finished_at is not None:
            out["finished_at"] = self.finished_at
        for name, _ in _OPTIONAL_BLOCKS:
            block = getattr(self, name)
            if block is not None:
                out[name] = dataclasses.asdict(block)
        if self.adjustments:
            out["adjustments"] = list(self.adjustments)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunRecord:
        """Parse a result JSON object; raises :class:`RecordError` saying why it is not a usable result."""
        reason = invalid_reason(raw)
        if reason is not None:
            raise RecordError(reason)
        rest = dict(raw)
        ident = RunIdentity(**{k: rest.pop(k, None) for k in _IDENTITY_KEYS})
        prov_raw = {k: rest.pop(k, None) for k in _PROVENANCE_KEYS}
        prov_raw["config"] = prov_raw["config"] or {}
        prov_raw["method_config"] = prov_raw["method_config"] or {}
        prov_raw["versions"] = prov_raw["versions"] or {}
        prov = Provenance(**prov_raw)
        splits = None
        if all(k in rest for k in _SPLIT_KEYS):
            splits = SplitInfo(**{k: rest.pop(k) for k in _SPLIT_KEYS})
        metrics_raw = rest.pop("metrics", None)
        record = cls(
            schema_version=rest.pop("schema_version", SCHEMA_VERSION),
            status=rest.pop("status"),
            message=rest.pop("message", "") or "",
            identity=ident,
            provenance=prov,
            splits=splits,
            metrics=Metrics.from_dict(metrics_raw or {}),
            input_pipeline=rest.pop("input_pipeline", None),
            resumed_from_epoch=rest.pop("resumed_from_epoch", None),
            finished_at=rest.pop("finished_at", None),
        )
        record.adjustments = rest.pop("adjustments", None)
        for name, block_cls in _OPTIONAL_BLOCKS:
            block = rest.get(name)
            if isinstance(block, Mapping) and _fits(block_cls, block):
                setattr(record, name, block_cls(**rest.pop(name)))
        record.extra = rest
        return record


def _fits(block_cls: type, block: Mapping[str, Any]) -> bool:
    """Whether ``block`` has every required field of ``block_cls`` and nothing it does not know."""
    fields = dataclasses.fields(block_cls)
    required = {f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return required <= set(block) <= {f.name for f in fields}


def invalid_reason(res: Any) -> str | None:
    """Why a parsed JSON object is not a usable peftbench result (``None`` when it is)."""
    if not isinstance(res, Mapping) or "status" not in res:
        return "not a peftbench result (no 'status')"
    version = res.get("schema_version", SCHEMA_VERSION)
    if version not in READABLE_SCHEMAS:
        return f"schema_version {version!r} is not one this peftbench reads ({', '.join(map(str, READABLE_SCHEMAS))})"
    if res["status"] == RUNNING_STATUS:
        return None
    missing = [k for k in REQUIRED_KEYS if res.get(k) in (None, "")]
    if missing:
        return f"partial result: no {', '.join(missing)}"
    if res["status"] == "success":
        metrics = res.get("metrics")
        if not isinstance(metrics, Mapping):
            return "partial result: status 'success' but no 'metrics'"
        bad = [k for k in REQUIRED_SUCCESS_METRICS
               if isinstance(metrics.get(k), bool) or not isinstance(metrics.get(k), (int, float))]
        if bad:
            return f"partial result: status 'success' but metric(s) {', '.join(bad)} missing or not numbers"
    return None


# -- the one reader and the one writer --------------------------------------------------------------------
def read_record(path: str | Path) -> RunRecord:
    """Read and validate one ``result.json``.

    Raises:
        OSError: the file cannot be read.
        RecordError: it is not JSON, or not a usable result (the message says why).
    """
    try:
        with open(path) as f:
            raw = json.load(f)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{type(exc).__name__}: {exc}") from None  # as the leaderboard has always listed it
    return RunRecord.from_dict(raw)


def write_record(record: RunRecord, path: str | Path | None = None) -> Path:
    """Write ``record`` atomically to ``path`` (default: its run folder's ``result.json``); return the path."""
    target = Path(path) if path is not None else record.path
    write_json_atomic(target, record.to_dict())
    return target
