"""peftbench-tune's plan: its options, and the studies of a command, each with its checked search space, before
anything runs (torch only where a check builds a method or counts parameters).

Every mistake a user can make here (an unknown knob, an empty space, a grid smaller than the budget, a parameter
budget no candidate fits, a value a method refuses) stops the command with a clear message and exit code 2
before a study is opened, so nothing already tuned is touched.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from peftbench.config import compose
from peftbench.errors import ConfigError
from peftbench.identity import tune_key
from peftbench.paths import config_dir
from peftbench.tuning.space import JOINT, SearchSpace, all_knob_keys, check_knobs, load_space, lookup
from peftbench.tuning.study import SEARCHES, pruner_settings

SPACES = "tune"  # configs/tune/<method>.yaml
LAUNCH_ONLY = ("hydra.sweep.", "hydra.sweeper", "hydra/sweeper")  # set by peftbench-tune per launch


@dataclasses.dataclass
class TuneOptions:
    """peftbench-tune's own options (``search=``, ``budget=``, ``tune.<name>=`` on the command line)."""

    search: str = "tpe"  # tpe | grid | random
    budget: int = 16  # trials per study (method x task), the same for every method
    name: str = "tuned"  # <results>/tune/<name>/ holds the journal; recipes are experiment/<name>/<method>.yaml
    batch: int = 1  # new trials per study launched together in each round
    seeds: list[int] | None = None  # tune-stage seeds (default: the command's seed list)
    sampler_seed: int = 0
    startup_trials: int = 10  # TPE: random trials before it models
    pruner: str = "median"  # median | none
    pruner_startup: int = 5  # complete trials before a trial can be pruned
    pruner_warmup_epochs: int = 10  # evaluations after the first N epochs never prune
    report_every: int = 1  # epochs between the trial runs' validation reports (trainer.eval_every)
    max_params: int | None = None  # parameter budget: trainable parameters without the head
    spaces: str | None = None  # a folder of space files read before configs/tune/
    stop_after_trials: int = 0  # drill: stop like a kill once N trials finished in this launch (0 = never)

    def __post_init__(self) -> None:
        if self.search not in SEARCHES:
            raise ConfigError(f"search={self.search!r}; valid choices: {', '.join(SEARCHES)}")
        for key in ("budget", "batch", "report_every"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{'budget' if key == 'budget' else 'tune.' + key} must be an integer >= 1, "
                                  f"got {getattr(self, key)!r}")
        for key in ("startup_trials", "pruner_startup", "pruner_warmup_epochs", "stop_after_trials"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 0:
                raise ConfigError(f"tune.{key} must be an integer >= 0, got {getattr(self, key)!r}")
        if self.max_params is not None and (not isinstance(self.max_params, int) or self.max_params < 1):
            raise ConfigError(f"tune.max_params must be a positive integer (trainable parameters without the "
                              f"head), got {self.max_params!r}")
        if not self.name or not all(c.isalnum() or c in "_-." for c in self.name) or self.name.startswith("."):
            raise ConfigError(f"tune.name={self.name!r}: use letters, digits, '_', '-', '.' (a folder name)")
        if self.seeds is not None and (not self.seeds or not all(isinstance(s, int) for s in self.seeds)):
            raise ConfigError(f"tune.seeds must be a non-empty list of integers, got {self.seeds!r}")
        pruner_settings(self.pruner, 0, 0, 1)  # checks the name


def fmt(value: Any) -> str:
    """A value as a Hydra override writes it (strings quoted, so '8' stays a string)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def canonical(values: Any) -> str:
    return json.dumps(values, sort_keys=True, default=str)


@dataclasses.dataclass
class StudyPlan:
    """One study: a setting (method x task x ...), its search space and seeds."""

    combo: list[str]  # the setting's overrides (no seed, no searched knob)
    base: dict[str, Any]  # the setting composed under protocol=tune with the first tune seed
    space: SearchSpace
    seeds: list[int]  # tune seeds
    final_seeds: list[int]
    name: str  # the study's name in the journal
    report: list[str]  # overrides that make the trial runs report per epoch
    study: Any = None

    @property
    def label(self) -> str:
        return self.base["method"].get("label") or self.base["method"]["name"]

    def describe(self) -> str:
        ds = self.base["dataset"]
        return f"{self.label} on {ds['suite']}/{ds['name']} ({self.base['backbone']['name']})"


def space_folders(options: TuneOptions) -> list[Path]:
    """Where space files are read: ``tune.spaces`` (if given) first, then ``configs/tune/``."""
    folders = [config_dir() / SPACES]
    if options.spaces:
        given = Path(options.spaces).expanduser()
        if not given.is_dir():
            raise ConfigError(f"tune.spaces={options.spaces}: not a folder of search space files (<method>.yaml)")
        folders.insert(0, given)
    return folders


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return out


def _compose(overrides: list[str]) -> dict[str, Any]:
    from hydra.errors import HydraException

    try:
        return compose(overrides)
    except HydraException as exc:
        raise ConfigError(f"{' '.join(overrides)}: {exc}") from None


def _parse(args: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(args)
    except HydraException as exc:
        raise ConfigError(f"cannot parse the overrides: {exc}") from None


def _values(override: Any) -> list[Any]:
    return list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]


def check_values(space: SearchSpace, base: dict[str, Any]) -> None:
    """Every choice (and both ends of every range) must make a valid run config and method."""
    from peftbench.assemble import make_method, parse_spec

    for key, knob in space.knobs.items():
        values = list(knob.choices) if knob.finite else [knob.low, knob.high]
        for value in values:
            points = list(space.joint[value].items()) if key == JOINT and space.joint else [(key, value)]
            cfg = base
            for k, v in points:
                cfg = _set(cfg, k, v)
            spec = parse_spec(cfg, command_line=[k for k, _ in points])
            make_method(spec.method, spec.dataset.name, spec.dataset.suite, spec.trainer.merge)


def apply_param_budget(space: SearchSpace, base: dict[str, Any], max_params: int, label: str) -> SearchSpace:
    """The space restricted to the method settings within ``max_params`` trainable parameters (without the head):
    the method's knobs become one categorical over the settings that fit (counted by peftbench-params)."""
    from peftbench.apps.params import param_report

    def count(values: dict[str, Any]) -> int:
        cfg = base
        for k, v in values.items():
            cfg = _set(cfg, k, v)
        return int(param_report(cfg)["trainable_params_without_head"])

    for key in space.method_keys():
        knob = space.knobs[key]
        if not knob.finite and count({key: knob.low}) != count({key: knob.high}):
            raise ConfigError(f"{key} of {label} changes the parameter count: give it choices (a list) to search it "
                              f"under tune.max_params")
    finite = [k for k in space.method_keys() if space.knobs[k].finite]
    points = [dict(zip(finite, vals, strict=True)) for vals in itertools.product(*(space.knobs[k].choices or ()
                                                                                  for k in finite))]
    counted = [(p, count(p)) for p in points]
    fits = [p for p, n in counted if n <= max_params]
    if not fits:
        smallest, n = min(counted, key=lambda pn: pn[1])
        what = ", ".join(f"{k}={v}" for k, v in smallest.items()) or "its only setting"
        raise ConfigError(f"no candidate of {label} fits tune.max_params={max_params}: the smallest has {n} trainable "
                          f"parameters without the head ({what}); raise tune.max_params or add smaller choices")
    if len(fits) == len(points):
        return space
    return space.with_joint(fits, finite)


def plan_studies(args: list[str], options: TuneOptions) -> tuple[list[StudyPlan], list[str], Path]:
    """The studies of a command line, its launcher overrides and the tune folder (see :func:`peftbench.apps.tune.
    tune` for the meaning of the overrides)."""
    from peftbench.sweeps.plan import expand

    hydra_args = [o for o in args if o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    for o in hydra_args:
        if o.lstrip("+~").startswith(LAUNCH_ONLY):
            raise ConfigError(f"{o}: peftbench-tune sets the sweeper and the sweep folder of each launch (under "
                              f"<results>/tune/<tune.name>/launches/); drop it. The budget is budget=N")
    folders = space_folders(options)
    knob_keys = all_knob_keys(folders)
    rest = [o for o in args if o not in hydra_args]
    seeds: list[int] | None = None
    choices: dict[str, list[Any]] = {}
    pinned: set[str] = set()
    setting = []
    for text, o in zip(rest, _parse(rest), strict=True):
        key = o.key_or_group
        if key == "protocol":
            raise ConfigError(f"{text}: peftbench-tune runs protocol=tune, then protocol=final; drop it")
        if key == "trial" or key.startswith("trial."):
            raise ConfigError(f"{text}: the trial block is set by peftbench-tune on its trial runs; drop it")
        if key == "seed":
            seeds = [int(v) for v in _values(o)]
        elif key in knob_keys and o.is_sweep_override():
            choices[key] = _values(o)
        else:
            if key in knob_keys:
                pinned.add(key)
            setting.append(text)
    plans: dict[str, StudyPlan] = {}
    for combo in expand(setting):
        for o in combo:
            key = o.lstrip("+~").partition("=")[0]
            if key in knob_keys and key not in pinned:
                raise ConfigError(f"{o} comes from a sweep preset, but {key} is a searched knob: peftbench-tune "
                                  "searches the method's space (configs/tune/<method>.yaml); drop the preset or give "
                                  "the values on the command line")
        plan = plan_study(combo, seeds, choices, pinned, options, folders)
        plans.setdefault(plan.name, plan)
    tune_dirs = {Path(p.base["paths"]["results_dir"]) / "tune" / options.name for p in plans.values()}
    if len(tune_dirs) != 1:
        raise ConfigError("paths.results_dir must be one folder for the whole command")
    return list(plans.values()), hydra_args, tune_dirs.pop()


def plan_study(combo: list[str], seeds: list[int] | None, choices: dict[str, list[Any]], pinned: set[str],
               options: TuneOptions, folders: list[Path]) -> StudyPlan:
    """One study: its composed setting, checked space, seeds and name."""
    base = _compose([*combo, "protocol=tune"])
    final_seeds = seeds or [int(base["seed"])]
    tune_seeds = list(options.seeds or final_seeds)
    base["seed"] = tune_seeds[0]
    method = base["method"]
    label = method.get("label") or method["name"]
    space = load_space(method["name"], method.get("label"), folders)
    if choices:
        space = space.with_choices(choices, "the command line")
    space = space.without({k: lookup(base, k)[1] for k in pinned})
    if not space.knobs:
        raise ConfigError(
            f"the search space of {label} is empty: {', '.join(space.sources) or 'no space file'} names no knob"
            + (f" or every knob is pinned on the command line ({', '.join(space.pinned)})" if space.pinned else "")
            + f"; add knobs to {folders[-1]}/{label}.yaml or drop the pinned values")
    check_knobs(space, base)
    check_values(space, base)
    if options.max_params is not None:
        space = apply_param_budget(space, base, options.max_params, label)
    if options.search == "grid":
        size = len(space.grid())
        if size < options.budget:
            raise ConfigError(f"search=grid: the grid of {label} has {size} points, fewer than budget="
                              f"{options.budget} trials; lower the budget (the same for every method), widen the "
                              f"space, or use search=tpe")
    report = ([f"trainer.eval_every={options.report_every}"]
              if options.pruner != "none" and not any(o.startswith("trainer.eval_every=") for o in combo) else [])
    searched = space.searched_keys()
    key = hashlib.sha256(canonical({
        "setting": tune_key(base, (*searched, "seed")), "space": space.digest(), "search": options.search,
        "sampler_seed": options.sampler_seed, "seeds": tune_seeds, "report": report,
        "pruner": pruner_settings(options.pruner, options.pruner_startup, options.pruner_warmup_epochs,
                                  len(tune_seeds)),
        "startup_trials": options.startup_trials, "max_params": options.max_params,
    }).encode()).hexdigest()[:8]
    ds, backbone = base["dataset"], base["backbone"]["name"]
    return StudyPlan(combo=list(combo), base=json.loads(json.dumps(base)), space=space, seeds=tune_seeds,
                     final_seeds=final_seeds, name=f"{ds['suite']}/{ds['name']}/{backbone}/{label}/{key}",
                     report=report)
