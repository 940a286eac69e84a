"""Search spaces of peftbench-tune: one YAML per method in ``configs/tune/``, read and checked here.

A space file lists knobs, each a dotted key of the composed run config (``method.rank``, ``trainer.lr``)::

    knobs:
      method.rank: [1, 8, 16, 32]                     # choices (grid or sampled)
      trainer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # a range (sampled only; type: int for integers)

``common.yaml`` holds the knobs every method searches (learning rate, weight decay); ``<method>.yaml`` adds the
method's own and may redefine a common one. No torch and no Optuna at import (Optuna only for distributions).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from peftbench.errors import ConfigError

COMMON = "common"
RANGE_KEYS = ("low", "high", "log", "step", "type")
JOINT = "method"  # the one categorical of method settings under a parameter budget (see SearchSpace.joint)


@dataclasses.dataclass(frozen=True)
class Knob:
    """One searched key: a list of ``choices``, or a range ``low``..``high`` (``log`` scale, ``step``, ``integer``)."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @property
    def finite(self) -> bool:
        return self.choices is not None

    def spec(self) -> Any:
        """The knob as a space file writes it (recorded in results)."""
        if self.choices is not None:
            return list(self.choices)
        out: dict[str, Any] = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        if self.integer:
            out["type"] = "int"
        return out

    def distribution(self) -> Any:
        """The Optuna distribution of the knob."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(list(self.choices))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)


def parse_knob(key: str, spec: Any, source: str) -> Knob:
    """A knob from its YAML value (a list of choices or a range mapping); ConfigError says what is wrong."""
    where = f"knob {key} in {source}"
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{where} has no choices (an empty list); give at least one value, e.g. [1, 8, 16]")
        if len({json.dumps(v, sort_keys=True) for v in spec}) != len(spec):
            raise ConfigError(f"{where} repeats a choice: {list(spec)}")
        for value in spec:
            if not (value is None or isinstance(value, (bool, int, float, str))):
                raise ConfigError(f"{where}: choice {value!r} is not a number, string, boolean or null")
        return Knob(key, choices=tuple(spec))
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(RANGE_KEYS))
        if unknown or "low" not in spec or "high" not in spec:
            raise ConfigError(
                f"{where}: a range takes low and high (and optionally {', '.join(RANGE_KEYS[2:])}); got "
                f"{sorted(spec)}. Or give a list of choices, e.g. [1.0e-3, 1.0e-2]"
            )
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
            raise ConfigError(f"{where}: low and high must be numbers with low < high, got {low!r}, {high!r}")
        kind = spec.get("type", "int" if isinstance(low, int) and isinstance(high, int) else "float")
        if kind not in ("int", "float"):
            raise ConfigError(f"{where}: type must be int or float, got {kind!r}")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise ConfigError(f"{where}: a log range needs low > 0, got {low!r}")
        if log and spec.get("step") is not None:
            raise ConfigError(f"{where}: a log range takes no step")
        return Knob(key, low=low, high=high, log=log, step=spec.get("step"), integer=kind == "int")
    raise ConfigError(f"{where}: {spec!r} is neither a list of choices nor a range {{low: ..., high: ...}}")


@dataclasses.dataclass
class SearchSpace:
    """The knobs searched for one method; ``joint`` maps the labels of the joint method knob to its settings."""

    method: str
    knobs: dict[str, Knob]
    sources: list[str]
    pinned: dict[str, Any] = dataclasses.field(default_factory=dict)  # knobs fixed on the command line
    joint: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def finite(self) -> bool:
        return all(k.finite for k in self.knobs.values())

    def size(self) -> int | None:
        """Points of the grid (None when a knob is a range)."""
        if not self.finite:
            return None
        n = 1
        for knob in self.knobs.values():
            n *= len(knob.choices or ())
        return n

    def grid(self) -> list[dict[str, Any]]:
        """Every point (knob -> value, the space's own parameter names), the last knob varying fastest."""
        if not self.finite:
            ranges = [k.key for k in self.knobs.values() if not k.finite]
            raise ConfigError(
                f"search=grid needs choices for every knob; {', '.join(ranges)} of {self.method} is a range: give a "
                f"list in the space file or on the command line (e.g. {ranges[0]}=1e-3,1e-2), or use search=tpe"
            )
        keys = list(self.knobs)
        return [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(self.knobs[k].choices or () for k in keys))]

    def distributions(self) -> dict[str, Any]:
        return {key: knob.distribution() for key, knob in self.knobs.items()}

    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Dotted config key -> value of a trial's parameters (the joint method knob expanded)."""
        out: dict[str, Any] = {}
        for key, value in params.items():
            if key == JOINT and self.joint:
                out.update(self.joint[value])
            else:
                out[key] = value
        return out

    def method_keys(self) -> list[str]:
        """The knobs of the method block (its options)."""
        return [k for k in self.knobs if k.startswith("method.")]

    def to_dict(self) -> dict[str, Any]:
        """The space as recorded: knob -> choices or range, plus the pinned knobs and the joint settings."""
        out: dict[str, Any] = {"knobs": {k: v.spec() for k, v in self.knobs.items()}, "sources": self.sources}
        if self.pinned:
            out["pinned"] = dict(self.pinned)
        if self.joint:
            out["joint"] = {label: dict(values) for label, values in self.joint.items()}
        return out

    def digest(self) -> str:
        blob = json.dumps({"knobs": {k: v.spec() for k, v in self.knobs.items()}, "joint": self.joint},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def with_choices(self, choices: Mapping[str, Sequence[Any]], source: str) -> SearchSpace:
        """The space with the choices of some knobs replaced (command-line lists); every key must be a knob."""
        unknown = sorted(set(choices) - set(self.knobs))
        if unknown:
            raise ConfigError(
                f"{', '.join(unknown)}: not a knob of the search space of {self.method} "
                f"({', '.join(self.sources)}); its knobs: {', '.join(self.knobs)}. Search values on the command line "
                "replace a knob's choices; give the method its own command or add the knob to its space file"
            )
        knobs = dict(self.knobs)
        for key, values in choices.items():
            knobs[key] = parse_knob(key, list(values), source)
        return dataclasses.replace(self, knobs=knobs, sources=[*self.sources, source])

    def without(self, pinned: Mapping[str, Any]) -> SearchSpace:
        """The space without the knobs fixed on the command line (they are part of the setting then)."""
        knobs = {k: v for k, v in self.knobs.items() if k not in pinned}
        return dataclasses.replace(self, knobs=knobs, pinned={**self.pinned, **{k: pinned[k] for k in self.knobs
                                                                               if k in pinned}})

    def with_joint(self, points: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> SearchSpace:
        """The knobs ``keys`` replaced by one categorical over ``points`` (the method settings within a parameter
        budget), placed first."""
        joint = {",".join(f"{k.removeprefix('method.')}={_fmt(v)}" for k, v in p.items()): dict(p) for p in points}
        knobs = {JOINT: Knob(JOINT, choices=tuple(joint))}
        knobs.update({k: v for k, v in self.knobs.items() if k not in keys})
        return dataclasses.replace(self, knobs=knobs, joint=joint)

    def searched_keys(self) -> list[str]:
        """The dotted config keys the space sets (the joint knob's keys in place of it)."""
        keys = [k for k in self.knobs if not (k == JOINT and self.joint)]
        for values in self.joint.values():
            keys += [k for k in values if k not in keys]
        return keys


def _fmt(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _first(stem: str, folders: Sequence[Path]) -> Path | None:
    return next((f / f"{stem}.yaml" for f in folders if (f / f"{stem}.yaml").is_file()), None)


def space_files(method: str, label: str | None, folders: Sequence[Path]) -> list[Path]:
    """The common file and the method's own (a preset's file by its label, else the method's), each from the first
    folder that has it."""
    common = _first(COMMON, folders)
    own = (_first(label, folders) if label and label != method else None) or _first(method, folders)
    return [p for p in (common, own) if p is not None]


def _read(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the search space {path}: {exc}") from None
    if not isinstance(raw, Mapping) or set(raw) - {"knobs"}:
        raise ConfigError(f"{path}: a search space file has one key, knobs: {{<dotted key>: <choices or range>}}")
    knobs = raw.get("knobs") or {}
    if not isinstance(knobs, Mapping):
        raise ConfigError(f"{path}: knobs must map dotted config keys to choices or ranges")
    return dict(knobs)


def load_space(method: str, label: str | None, folders: Sequence[Path]) -> SearchSpace:
    """The search space of ``method`` (its ``label`` for presets): common knobs, then the method's file."""
    knobs: dict[str, Knob] = {}
    sources = []
    for path in space_files(method, label, folders):
        sources.append(str(path))
        for key, spec in _read(path).items():
            knobs[str(key)] = parse_knob(str(key), spec, str(path))
    return SearchSpace(label or method, knobs, sources)


def all_knob_keys(folders: Iterable[Path]) -> set[str]:
    """Every knob any space file in ``folders`` names (command-line lists on these keys are search values)."""
    keys: set[str] = set()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.yaml")):
            keys.update(str(k) for k in _read(path))
    return keys


def lookup(cfg: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """Whether the plain config has ``dotted``, and its value."""
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def check_knobs(space: SearchSpace, cfg: Mapping[str, Any]) -> None:
    """Every knob must name an existing key of the composed config (ConfigError lists the block's keys)."""
    for key in space.knobs:
        if key == JOINT and space.joint:
            continue
        found, _ = lookup(cfg, key)
        if found:
            continue
        block, _, _ = key.rpartition(".")
        exists, node = lookup(cfg, block) if block else (True, cfg)
        valid = sorted(f"{block}.{k}" if block else k for k in node) if exists and isinstance(node, Mapping) else []
        raise ConfigError(
            f"unknown knob {key} in the search space of {space.method} ({', '.join(space.sources)}): the composed "
            f"config has no {key}" + (f"; valid keys of {block}: {', '.join(valid)}" if valid else "")
        )
