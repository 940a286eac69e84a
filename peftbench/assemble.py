"""The run spine: a typed spec of a run, built once from the composed config, and the one assemble step.

Every entry point (train, params, bench, tune, search, the embedded benchmark) goes through here: this is the
only caller of the backbone and method builders, of attaching a method and counting its parameters, of
building the data splits, and of the thread / seed / device / dtype set-up. Switches leave out the weights
(random init: parameter counts, step costs) and the data (nothing to train on).

Methods that select on the training data before training (``looks_at_data``: SCT, GPS) make their selection
here, whenever a run is assembled with data, on its training split only (:func:`select_on_training_data`).
Without data (``peftbench-params``, ``peftbench-bench``) their modules keep the placeholder selection: counts
and step costs do not depend on which channels or connections are selected, only on how many.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.config import build_config, to_plain
from peftbench.data import DataConfig, DatasetConfig, Splits, build_splits
from peftbench.engine.checkpoint import ResumeConfig
from peftbench.engine.loop import TrainerConfig, autocast_dtype, resolve_device
from peftbench.engine.optim import OptimConfig
from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.identity import config_hash, run_dir
from peftbench.loggers import LoggerConfig
from peftbench.methods.attach import attach_method, noah_reinit
from peftbench.methods.base import PeftMethod, TrainingData
from peftbench.methods.layers.selection import load_selection, selection_state
from peftbench.methods.registry import build_method, split_method_block
from peftbench.models import BackboneConfig, backbone_data_config, build_backbone, make_backbone_config
from peftbench.per_task import PerTaskResolution, resolve_run_config
from peftbench.records import ParamCounts, SelectionBlock
from peftbench.tuning.study import TrialConfig

SELECTION_FILE = "selection.safetensors"  # a data-dependent selection, kept with the run (resume, reuse)

PROTOCOLS = ("tune", "final")
ON_EXISTING = ("skip", "error", "overwrite")
BLOCKS = ("backbone", "method", "dataset", "data", "trainer", "optim", "logger", "protocol", "seed")
# Linears a method adds keep their paper's init, or take NOAH's trunc-normal(0.02) re-initialisation
METHOD_INITS = ("paper", "noah")
# keys of the composed config that steer the command, not the run (never recorded)


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """The ``method:`` block: the registered name, what results call it (``label``) and its options."""

    name: str
    label: str
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> MethodSpec:
        name, label, options = split_method_block(block)
        return cls(name, label, options)


@dataclasses.dataclass
class RunSpec:
    """Every block of a run, typed, plus the resolved plain config that goes into its record."""

    backbone: BackboneConfig
    method: MethodSpec
    dataset: DatasetConfig
    data: DataConfig
    trainer: TrainerConfig
    optim: OptimConfig
    logger: LoggerConfig
    resume: ResumeConfig
    trial: TrialConfig
    protocol: str
    seed: int | None
    results_dir: Path
    on_existing: str
    config: dict[str, Any]
    method_init: str = "paper"
    per_task: PerTaskResolution = dataclasses.field(default_factory=lambda: PerTaskResolution("none", {}, []))
    adjustments: list[str] = dataclasses.field(default_factory=list)  # values changed so the run can run
    dry_run: bool = False

    @property
    def precision(self) -> str:
        """The resolved precision: ``fp32``, ``bf16`` or ``fp16`` (``auto`` is bf16 on CUDA, fp32 elsewhere)."""
        dtype = autocast_dtype(self.trainer.precision, resolve_device(self.trainer.device))
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]

    @property
    def config_hash(self) -> str:
        """The identity of the run (its config and resolved precision; :func:`peftbench.identity.identity`)."""
        return config_hash(self.config, self.precision)

    @property
    def run_dir(self) -> Path:
        return run_dir(self.results_dir, self.config, self.config_hash)


def _hydra_command_line() -> list[str]:
    """The overrides of the running Hydra job (empty outside ``@hydra.main``)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def parse_spec(cfg: Any, command_line: list[str] | None = None) -> RunSpec:
    """The typed spec of a composed ``configs/train.yaml`` (a DictConfig or its plain copy).

    Its ``per_task`` table (a recipe's) is resolved for the run's dataset here, once; a warmup longer than the
    run is capped. The recorded ``config`` is the result: resolved values, no table, no command keys.

    Args:
        cfg: the composed config.
        command_line: the overrides it was composed with (their keys win over per-task values); None reads
            them from the running Hydra job.
    """
    raw = to_plain(cfg)
    for key in BLOCKS:
        if key not in raw:
            raise ConfigError(f"the config has no '{key}' block; compose it from configs/train.yaml")
    overrides = _hydra_command_line() if command_line is None else command_line
    resolved = resolve_run_config(raw, overrides)
    plain, per_task, adjustments, steering = resolved.config, resolved.per_task, resolved.adjustments, resolved.steering
    method_init = plain.get("method_init", "paper")
    if method_init not in METHOD_INITS:
        raise ConfigError(f"method_init={method_init!r}; valid choices: {', '.join(METHOD_INITS)}")
    if plain["protocol"] not in PROTOCOLS:
        raise ConfigError(f"protocol={plain['protocol']!r}; valid choices: {', '.join(PROTOCOLS)}")
    on_existing = plain.get("on_existing", "skip")
    if on_existing not in ON_EXISTING:
        raise ConfigError(f"on_existing={on_existing!r}; valid choices: {', '.join(ON_EXISTING)}")
    return RunSpec(
        backbone=make_backbone_config(plain["backbone"]),
        method=MethodSpec.from_block(plain["method"]),
        dataset=build_config(DatasetConfig, plain["dataset"], "dataset"),
        data=build_config(DataConfig, plain["data"], "data"),
        trainer=build_config(TrainerConfig, plain["trainer"], "trainer"),
        optim=build_config(OptimConfig, plain["optim"], "optim"),
        logger=build_config(LoggerConfig, plain["logger"], "logger"),
        resume=build_config(ResumeConfig, plain.get("resume", {}), "resume"),
        trial=build_config(TrialConfig, plain.get("trial") or {}, "trial"),
        protocol=plain["protocol"],
        seed=plain["seed"],
        results_dir=Path(plain.get("paths", {}).get("results_dir", "results")),
        on_existing=on_existing,
        config=plain,
        method_init=method_init,
        per_task=per_task,
        adjustments=adjustments,
        dry_run=bool(steering["dry_run"]),
    )


# -- runtime: threads, seed, device, dtype ---------------------------------------------------------------------
def seed_everything(seed: int | None) -> None:
    """Seed Python, NumPy and torch (no-op for ``None``)."""
    if seed is None:
        return
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclasses.dataclass
class Runtime:
    """Where a run computes and in which autocast dtype (None = fp32)."""

    device: torch.device
    dtype: torch.dtype | None


def set_up_runtime(trainer: TrainerConfig, seed: int | None) -> Runtime:
    """A run's runtime from its trainer block: see :func:`runtime_for`."""
    return runtime_for(trainer.num_threads, trainer.device, trainer.precision, seed)


def runtime_for(num_threads: int, device: str, precision: str, seed: int | None) -> Runtime:
    """Set torch's CPU threads (``num_threads`` > 0), seed everything, resolve the device and autocast dtype.

    Args:
        num_threads: torch CPU threads; 0 keeps torch's default.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU) | ``fp32`` | ``bf16``.
        seed: None leaves the generators as they are.
    """
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    resolved = resolve_device(device)
    seed_everything(seed)
    return Runtime(resolved, autocast_dtype(precision, resolved))


# -- model: backbone + method ----------------------------------------------------------------------------------
def make_method(method: MethodSpec, task: str | None, suite: str | None, merge: bool = False) -> PeftMethod:
    """The method of a run, its per-task settings resolved for ``task`` / ``suite``.

    Raises:
        ConfigError: ``merge`` is asked of a method that is not a reparameterisation.
    """
    built = build_method(method.name, method.options, task=task, suite=suite)
    if merge and not built.mergeable:
        raise ConfigError(
            f"trainer.merge=true but method {built.name!r} is not mergeable; drop trainer.merge or pick a "
            "reparameter method (e.g. lora, ssf, repadapter, fact_tt)"
        )
    return built


@dataclasses.dataclass
class BuiltModel:
    """A backbone with its method attached, and what it was built from."""

    model: nn.Module
    counts: ParamCounts
    data_config: dict[str, Any]  # the backbone's pretrained normalisation, interpolation, input size


def build_plain_backbone(backbone: BackboneConfig, num_classes: int, weights: bool = True) -> nn.Module:
    """The backbone with a fresh ``num_classes`` head and no method (``weights`` False: random init)."""
    return build_backbone(backbone if weights else dataclasses.replace(backbone, weights="none"), num_classes)


def build_model(backbone: BackboneConfig, method: PeftMethod, num_classes: int, weights: bool = True,
                method_init: str = "paper") -> BuiltModel:
    """Build the backbone with a ``num_classes`` head, attach ``method``, freeze the rest and count.

    Args:
        backbone: the backbone config.
        method: a built method (:func:`make_method`).
        num_classes: size of the task head.
        weights: False builds at random init (``backbone.weights=none``), for counts and costs.
        method_init: ``paper`` keeps the method's init; ``noah`` re-initialises the Linears it added as NOAH's
            code does (:func:`peftbench.methods.attach.noah_reinit`).

    Returns:
        The model (on CPU) and its counts; the optimizer must see exactly ``counts.trainable_params``.
    """
    model = build_plain_backbone(backbone, num_classes, weights)
    data_config = backbone_data_config(model)
    counts = attach_method(model, method)
    if method_init == "noah":
        noah_reinit(model)
    n_opt = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n_opt != counts.trainable_params:  # the optimizer sees exactly the counted parameters
        raise RuntimeError(f"optimizer would hold {n_opt} parameters, counted {counts.trainable_params}")
    return BuiltModel(model, counts, data_config)


def check_merge(method: PeftMethod, model: nn.Module) -> None:
    """Refuse ``trainer.merge=true`` before training when this backbone cannot absorb the method (a merge of a
    copy of the freshly prepared model is tried: a bias-free layer that would need a bias refuses)."""
    import copy

    try:
        method.merge(copy.deepcopy(model))
    except MethodNotSupportedError as exc:
        raise ConfigError(f"trainer.merge=true: {exc}") from None


def build_data(spec: RunSpec, data_config: Mapping[str, Any], protocol: str | None = None) -> Splits:
    """The run's train and evaluation splits (``protocol`` overrides the spec's)."""
    return build_splits(spec.dataset, spec.data, protocol or spec.protocol, tuple(data_config["mean"]),
                        tuple(data_config["std"]))


@dataclasses.dataclass
class Assembled:
    """Everything a run needs before its first step."""

    spec: RunSpec
    runtime: Runtime
    method: PeftMethod
    model: nn.Module
    counts: ParamCounts
    data_config: dict[str, Any]
    splits: Splits | None
    selection: SelectionBlock | None = None  # methods that select on the training data

    def data(self) -> Splits:
        """The splits (a caller that assembled with ``data=False`` has none)."""
        if self.splits is None:
            raise RuntimeError("this run was assembled with data=False: it has no splits")
        return self.splits


def assemble(spec: RunSpec, weights: bool = True, data: bool = True, protocol: str | None = None,
             runtime: Runtime | None = None, method: PeftMethod | None = None, run_folder: Path | None = None,
             resuming: bool = False) -> Assembled:
    """Runtime, method, model, (``data``) splits and the method's selection of a run, in the order a run needs them.

    Args:
        spec: the run.
        weights: False: random init (no weights file or hub needed).
        data: False: no splits (nothing is read from disk, nothing selected).
        protocol: read the splits of this protocol instead of the spec's.
        runtime, method: when already set up / made (a run records both before its backbone loads).
        run_folder: where a selection is saved (``selection.safetensors``); None keeps it in memory only.
        resuming: the run continues from an epoch checkpoint: read the selection back from ``run_folder``.
    """
    runtime = runtime if runtime is not None else set_up_runtime(spec.trainer, spec.seed)
    if method is None:
        method = make_method(spec.method, spec.dataset.name, spec.dataset.suite, spec.trainer.merge)
    built = build_model(spec.backbone, method, spec.dataset.num_classes, weights, spec.method_init)
    if spec.trainer.merge:
        check_merge(method, built.model)
    splits = build_data(spec, built.data_config, protocol) if data else None
    a = Assembled(spec, runtime, method, built.model, built.counts, built.data_config, splits)
    if splits is not None and method.looks_at_data:
        a.selection = select_on_training_data(a, run_folder, resuming)
    return a


def training_data(a: Assembled) -> TrainingData:
    """The run's training split as a method may read it before training (never the evaluation split)."""
    splits, trainer = a.data(), a.spec.trainer
    return TrainingData(
        split=splits.train_split,
        plain=splits.train_plain(),
        with_transform=splits.train_with,
        num_classes=splits.num_classes,
        normalization=dict(splits.normalization),
        device=a.runtime.device,
        dtype=a.runtime.dtype,
        batch_size=trainer.batch_size,
        num_workers=a.spec.data.num_workers,
        seed=a.spec.seed,
    )


def select_on_training_data(a: Assembled, run_folder: Path | None = None, resuming: bool = False) -> SelectionBlock:
    """Make (or, for a resumed run, read back) the selection of a method that looks at the training data.

    The method's ``prepare`` runs on the training split with the global random generators forked and seeded
    from the run's seed, so the training that follows draws the same random numbers whether the selection ran
    in this process or was read back. The selection is saved to ``<run_folder>/selection.safetensors`` with
    its record; a resumed run loads that file, so it trains on exactly the selection it started with.

    Returns:
        What was selected, on which split, in how many seconds (the ``selection`` block of the run's record).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from peftbench.atomic import atomic_path

    path = Path(run_folder) / SELECTION_FILE if run_folder is not None else None
    if resuming and path is not None and path.is_file():
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
            saved = json.loads(f.metadata()["record"])
        load_selection(a.model, state, str(path))
        print(f"[peftbench] {a.method.name}: selection read back from {path}")
        return dataclasses.replace(SelectionBlock(**saved), restored=True)
    device = a.runtime.device
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if a.spec.seed is not None:
            torch.manual_seed(a.spec.seed)
        summary = a.method.prepare(a.model, training_data(a))
    block = SelectionBlock(
        method=a.method.name,
        criterion=a.method.criterion,
        split=a.data().train_split,
        images=len(a.data().train),
        seconds=time.perf_counter() - t0,
        device=str(device),
        selected=summary,
        file=str(path) if path is not None else None,
    )
    print(f"[peftbench] {a.method.name}: selected on {block.split} ({block.images} images) in {block.seconds:.1f} s")
    if path is not None:
        with atomic_path(path) as tmp:
            save_file(selection_state(a.model), str(tmp), metadata={"record": json.dumps(dataclasses.asdict(block))})
    return block
