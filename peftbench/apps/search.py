"""The one-shot search pipeline of the searched methods (NOAH, GLoRA), as one command (``peftbench-search``).

1. **supernet**: ``peftbench-train`` with ``protocol=tune`` (train800 -> val200) and ``method.arch=supernet``:
   every module at its largest size, a new architecture drawn at every step; an ordinary run (its result JSON,
   epoch checkpoints, resume, skip when finished);
2. **search**: the supernet's trained tensors are loaded and :class:`~peftbench.methods.unified.search.
   evolution.Evolution` evaluates architectures on val200 under the parameter budget; its state is written
   after every generation (``search_state.json``), the winner as ``arch.yaml``, runnable as
   ``peftbench-train method=<name> method.arch=<that file>``;
3. **final**: ``peftbench-train`` with ``protocol=final`` (train800val200 -> test) on the chosen subnet, from
   scratch or from the supernet's weights (``final.init``). Its result JSON gets a ``search`` block: the
   architecture, its counts, the budget, the validation accuracy it was chosen with, and the cost of each stage.

Stage settings (epochs, learning rates, the evolution) are presets in ``configs/search/`` (``noah``,
``glora``: the papers' values; ``quick``: minutes on a CPU); ``search.<stage>.<key>=value`` overrides them.
Relaunching the same command redoes only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peftbench.atomic import write_json_atomic, write_text_atomic
from peftbench.config import build_config, compose
from peftbench.errors import ConfigError, PeftbenchError
from peftbench.identity import config_hash, launched_result
from peftbench.methods.unified.search.evolution import EvolutionConfig
from peftbench.paths import config_dir
from peftbench.records import RESULT_FILE, RunRecord, SearchBlock, read_record, write_record

INITS = ("scratch", "supernet")
STAGE_KEYS = ("supernet", "evolution", "final")
FORBIDDEN = ("protocol", "method.arch", "method.inherit")  # the pipeline sets them per stage


@dataclasses.dataclass
class StageTraining:
    """The ``trainer.*`` settings of a training stage and its ``backbone.drop_path_rate`` (the rest comes from
    the command line)."""

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 10
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    batch_size: int = 64
    drop_path_rate: float = 0.0

    def overrides(self) -> list[str]:
        out = [f"trainer.{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(StageTraining)]
        return [o.replace("trainer.drop_path_rate", "backbone.drop_path_rate") for o in out]


@dataclasses.dataclass
class FinalTraining(StageTraining):
    """The final retraining; ``init``: ``scratch`` (fresh modules) or ``supernet`` (weight inheritance)."""

    init: str = "scratch"

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ConfigError(f"search.final.init={self.init!r}; valid choices: {', '.join(INITS)}")



@dataclasses.dataclass
class SearchConfig:
    """A preset from ``configs/search/``."""

    supernet: StageTraining
    evolution: EvolutionConfig
    final: FinalTraining


def presets() -> list[str]:
    """The preset names (files in ``configs/search/``)."""
    return sorted(p.stem for p in (config_dir() / "search").glob("*.yaml"))


def load_preset(name: str, overrides: Sequence[str] = ()) -> SearchConfig:
    """Read ``configs/search/<name>.yaml`` and apply ``search.<stage>.<key>=value`` overrides.

    Args:
        name: the preset.
        overrides: dotted overrides without the ``search.`` prefix, e.g. ``supernet.epochs=3``.
    """
    from omegaconf import OmegaConf

    if name not in presets():
        raise ConfigError(f"unknown search preset {name!r}; valid choices: {', '.join(presets())} (configs/search/)")
    raw = OmegaConf.load(config_dir() / "search" / f"{name}.yaml")
    for o in overrides:
        key, sep, _ = o.partition("=")
        if not sep or key.split(".")[0] not in STAGE_KEYS or "." not in key:
            raise ConfigError(f"search override {o!r} must be search.<{'|'.join(STAGE_KEYS)}>.<key>=<value>")
    try:
        raw = OmegaConf.merge(raw, OmegaConf.from_dotlist(list(overrides)))
    except Exception as exc:  # OmegaConf's grammar errors
        raise ConfigError(f"cannot apply search overrides {list(overrides)}: {exc}") from None
    plain = OmegaConf.to_container(raw, resolve=True)
    unknown = sorted(set(plain) - set(STAGE_KEYS))
    if unknown:
        raise ConfigError(f"search preset {name!r} has unknown block(s) {unknown}; valid: {', '.join(STAGE_KEYS)}")
    return SearchConfig(
        supernet=build_config(StageTraining, plain.get("supernet", {}), "search.supernet"),
        evolution=build_config(EvolutionConfig, plain.get("evolution", {}), "search.evolution"),
        final=build_config(FinalTraining, plain.get("final", {}), "search.final"),
    )


def _arch_override(arch: dict[str, list[Any]]) -> str:
    """``method.arch={slot:[...],...}`` in Hydra's override grammar."""
    body = ",".join(f"{k}:[{','.join(str(v) for v in vals)}]" for k, vals in arch.items())
    return f"method.arch={{{body}}}"


def _hydra_args(overrides: Sequence[str]) -> list[str]:
    """The ``hydra...`` overrides (``hydra/launcher=slurm hydra.launcher.partition=gpu``): every stage gets them."""
    return [o for o in overrides if o.lstrip("+~").startswith(("hydra.", "hydra/"))]


def _train_stage(args: Sequence[str], stage: str) -> dict[str, Any]:
    """Run one ``peftbench-train`` job (through the launcher ``hydra/launcher=`` names, if any); return its record
    and the cost of this invocation."""
    cfg = compose(args)
    from peftbench.assemble import parse_spec

    spec = parse_spec(cfg, command_line=list(args))
    launched = any(o.lstrip("+~").startswith("hydra/launcher=") for o in args)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "peftbench.cli.train", *(["-m"] if launched else []), *args]
    print(f"[peftbench-search] {stage}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise PeftbenchError(f"the {stage} stage stopped with exit code {proc.returncode} (its error is printed "
                             "above); fix it and relaunch the same command: finished stages are skipped")
    # where that run wrote its record (a launcher's node resolves trainer.precision=auto by its own device)
    path = launched_result(spec.config) if launched else spec.run_dir / RESULT_FILE
    record = read_record(path)
    if record.status != "success":
        raise PeftbenchError(f"the {stage} run ended with status {record.status!r}: {record.message} ({path})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"record": record, "path": path, "invocation_wall_seconds": time.perf_counter() - t0,
            "invocation_cpu_seconds": cpu}


def _wall(record: RunRecord) -> float:
    return record.metrics.wall_seconds or 0.0


def _cost(wall: float, cpu: float | None, device: str) -> dict[str, Any]:
    gpu = "cuda" in device.lower() or "nvidia" in device.lower()
    return {"wall_seconds": wall, "cpu_seconds": cpu, "device": device,
            "gpu_hours" if gpu else "cpu_hours": (wall / 3600.0) if gpu else (cpu or wall) / 3600.0}


def search(overrides: Sequence[str], preset: str | None = None, search_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Supernet -> evolutionary search -> final retraining, for one method x dataset x backbone x seed.

    Args:
        overrides: ``peftbench-train`` overrides (``method=noah|glora``, ``dataset=...``, ...); no sweeps.
        preset: a ``configs/search/`` preset; default: the one named like the method.
        search_overrides: ``supernet.epochs=3``-style overrides of the preset.

    Returns:
        The final run's result JSON, with its ``search`` block.
    """
    from peftbench.methods.registry import available_methods, get_method_class
    from peftbench.methods.unified.search.space import SearchedMethod

    hydra_args = _hydra_args(overrides)
    for o in overrides:
        if o in hydra_args:
            continue
        key = o.lstrip("+~").partition("=")[0]
        if key in FORBIDDEN:
            raise ConfigError(f"{o}: peftbench-search sets {key} for each stage itself; drop it")
        value = o.partition("=")[2]
        if o in ("-m", "--multirun") or ("," in value and not value.startswith(("[", "{"))):
            raise ConfigError(f"{o}: peftbench-search runs one setting; launch one command per setting")
    base = compose(overrides)
    name = base["method"]["name"]
    if not issubclass(get_method_class(name), SearchedMethod):
        searched = sorted(n for n in available_methods() if issubclass(get_method_class(n), SearchedMethod))
        raise ConfigError(f"method {name!r} has no search space; peftbench-search takes method={'|'.join(searched)}")
    cfg = load_preset(preset or name, search_overrides)

    supernet_args = [*overrides, "protocol=tune", "method.arch=supernet", *cfg.supernet.overrides()]
    sup = _train_stage(supernet_args, "supernet")
    sup_res: RunRecord = sup["record"]
    sup_dir = sup["path"].parent
    results_dir = Path(base["paths"]["results_dir"])
    settings = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    out = results_dir / "search" / sup_dir.relative_to(results_dir / "runs")
    out = out.with_name(f"{out.name}-search{config_hash({'search': settings, 'supernet': sup_res.identity.config_hash})[:8]}")
    out.mkdir(parents=True, exist_ok=True)
    stages_path = out / "stages.json"
    stages = json.loads(stages_path.read_text()) if stages_path.is_file() else {}
    stages["supernet"] = _cost(_wall(sup_res),
                               stages.get("supernet", {}).get("cpu_seconds") or sup["invocation_cpu_seconds"],
                               sup_res.provenance.device) | {"run_dir": str(sup_dir)}
    write_json_atomic(stages_path, stages)

    search_args = (compose(supernet_args), cfg.evolution, sup_dir / "task.safetensors", out, stages, supernet_args)
    if "hydra/launcher=slurm" not in [o.lstrip("+~") for o in hydra_args]:
        found = run_search(*search_args)
    else:  # the evolution evaluates on the cluster too: one job with the training stages' launcher settings
        from peftbench.sweeps.slurm import call_as_job, launcher_settings

        found, done = call_as_job(launcher_settings(hydra_args), out / "slurm", f"{name}-evolution", _search_job,
                                  *search_args)
        stages.update(done)
    write_json_atomic(stages_path, stages)
    best = found["best"]
    arch_path = out / "arch.yaml"
    _write_arch(arch_path, name, best, sup_dir, base)

    final_args = [*overrides, "protocol=final", _arch_override(best["arch"]), *cfg.final.overrides()]
    if cfg.final.init == "supernet":
        final_args.append(f"method.inherit={sup_dir / 'task.safetensors'}")
    fin = _train_stage(final_args, "final")
    record: RunRecord = fin["record"]
    path = fin["path"]
    stages["final"] = _cost(_wall(record),
                            stages.get("final", {}).get("cpu_seconds") or fin["invocation_cpu_seconds"],
                            record.provenance.device) | {"run_dir": str(path.parent)}
    write_json_atomic(stages_path, stages)
    total_wall = sum(s["wall_seconds"] for s in stages.values())
    record.search = SearchBlock(
        method=name,
        preset=preset or name,
        settings=settings,
        arch=best["arch"],
        arch_file=str(arch_path),
        params=best["params"],
        budget_params=best["budget_params"],
        param_limit=found["limit"],
        val_accuracy=best["accuracy"],
        supernet_val_accuracy_largest=sup_res.accuracy,
        evaluations=found["evaluations"],
        history=found["history"],
        search_dir=str(out),
        cost={**stages, "total": {"wall_seconds": total_wall}},
    )
    write_record(record, path)
    result = record.to_dict()
    write_json_atomic(out / "search.json", result["search"])
    train = record.metrics.train
    print(f"[peftbench-search] final: top-1 {record.accuracy} on {train.accuracy_split if train else None} "
          f"with {best['params']} parameters (val {best['accuracy']:.2f}); architecture: {arch_path}; "
          f"result: {path}", flush=True)
    return result


def run_search(plain: dict[str, Any], evo: EvolutionConfig, weights: Path, out: Path,
               stages: dict[str, Any], command_line: Sequence[str] = ()) -> dict[str, Any]:
    """Stage 2 in this process: load the supernet, evolve on val200; returns the finished state."""
    from peftbench.assemble import assemble, parse_spec
    from peftbench.data.cache import decode_split, is_cacheable
    from peftbench.engine.loop import evaluate
    from peftbench.engine.measure import device_name
    from peftbench.methods.task_checkpoint import load_task_checkpoint
    from peftbench.methods.unified.search.evolution import Evolution

    spec = parse_spec(plain, command_line=list(command_line))
    t0, c0 = time.perf_counter(), time.process_time()
    asm = assemble(spec, protocol="tune")
    model, method, splits = asm.model, asm.method, asm.data()
    device, dtype = asm.runtime.device, asm.runtime.dtype
    load_task_checkpoint(model, weights)
    model.to(device).eval()
    val = splits.eval
    if spec.trainer.input_cache and is_cacheable(val):
        cached, _ = decode_split(val, device, spec.data.num_workers)
        val = cached if cached is not None else val
    n = method.positions(model)
    largest_budget = method.budget_params(model, method.largest(n))

    def score(arch: dict[str, list[Any]]) -> float:
        method.activate(model, arch)
        return evaluate(model, val, spec.trainer.eval_batch_size, device, dtype, 0)

    evolution = Evolution(
        evo,
        sample=lambda rng: method.sample(n, rng),
        mutate=lambda arch, rng: method.mutate(arch, rng, evo.m_prob, evo.s_prob),
        crossover=lambda a, b, rng: method.crossover(a, b, rng),
        budget=lambda arch: method.budget_params(model, arch),
        params=lambda arch: method.arch_params(model, arch),
        evaluate=score,
        limit=evo.limit(largest_budget),
        state_path=out / "search_state.json",
        seed=spec.seed,
        log=lambda line: print(line, flush=True),
    )
    already = evolution.state["finished"]
    state = evolution.run()
    previous = stages.get("search", {})
    wall = previous.get("wall_seconds", 0.0) + (0.0 if already else time.perf_counter() - t0)
    cpu = previous.get("cpu_seconds", 0.0) + (0.0 if already else time.process_time() - c0)
    stages["search"] = _cost(wall, cpu, device_name(device)) | {
        "val_split": splits.eval_split, "evaluations": state["evaluations"]}
    return state


def _search_job(plain: dict[str, Any], evo: EvolutionConfig, weights: Path, out: Path, stages: dict[str, Any],
                command_line: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`run_search` as a cluster job: returns its state and the stages' costs it added to."""
    state = run_search(plain, evo, weights, out, stages, command_line)
    return state, stages


def _write_arch(path: Path, name: str, best: dict[str, Any], sup_dir: Path, base: dict[str, Any]) -> None:
    import yaml

    ds = base["dataset"]
    header = (
        f"# {name} architecture chosen by peftbench-search on {ds['suite']}/{ds['name']} (val top-1 "
        f"{best['accuracy']:.2f}, {best['params']} trainable parameters without head,\n# {best['budget_params']} in the "
        f"method's budget count); supernet run: {sup_dir}\n# Run it: peftbench-train method={name} "
        f"method.arch={path} dataset={ds['suite']}/{ds['name']} protocol=final\n"
    )
    body = yaml.safe_dump({"arch": best["arch"]}, default_flow_style=None, sort_keys=False)
    write_text_atomic(path, header + body)
