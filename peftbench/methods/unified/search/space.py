"""Searched methods: per-layer choices, a weight-sharing supernet, and the architecture a search picks.

The survey's searched unified methods (NOAH, GLoRA) share one shape, which this module states once:

* the method places **elastic modules** in the backbone, each at one *position* of named *slots*
  (NOAH: slots ``prompt``, ``lora``, ``adapter``, one position per block; GLoRA: slots ``A`` ... ``E``,
  one position per ``nn.Linear``). An elastic module allocates what the largest choice it may take needs
  and runs with its *active* choice, reading prefix slices of its tensors (weight entanglement);
* an **architecture** is a plain mapping ``{slot: [choice per position]}``, so it is YAML and JSON as is;
* ``method.arch`` says what ``apply`` builds:

  - ``supernet``: every module allocated at its largest choice; in training mode a new architecture is drawn
    from the search space before every forward pass (one draw per step), in eval mode the largest one runs;
  - ``largest``: the largest architecture of the space as a fixed subnet;
  - ``published``: the paper's released architecture for ``method.task`` (methods that have them);
  - a mapping, or the path of a YAML file holding one (as written by ``peftbench-search``): that subnet.

  A fixed subnet allocates exactly its choices, so the trainable count is the subnet's own;
* ``method.inherit``: the ``task.safetensors`` of a supernet run; its tensors are copied into the subnet by
  name as prefix slices (weight inheritance), the head included.

The search space (sampling, mutation, crossover, the parameter count a budget is checked against) is the
method's; the evolutionary search over it is :mod:`peftbench.methods.unified.search.evolution`, and the
three-stage pipeline is :mod:`peftbench.apps.search`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from peftbench.errors import CheckpointError, ConfigError
from peftbench.methods.base import (
    C,
    MethodConfig,
    PeftMethod,
    PeftModule,
    head_parameters,
    method_owned_parameters,
)
from peftbench.methods.unified.search.evolution import Arch

ARCH_MODES = ("supernet", "largest", "published")


class ElasticModule(PeftModule):
    """A method module at one position of one or more slots; subclasses hold the tensors.

    Attributes:
        slots: the slot names this module reads its choices from (keys of the architecture mapping).
        choice: the active choice per slot.
    """

    slots: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.choice: dict[str, Any] = {}

    def active(self) -> Any:
        """The active choice of a single-slot module."""
        return self.choice[self.slots[0]]

    def param_count(self, choice: Mapping[str, Any]) -> int:
        """Trainable parameters this position holds in a fixed subnet with ``choice`` (per slot)."""
        raise NotImplementedError


@dataclasses.dataclass
class SearchedConfig(MethodConfig):
    """Options every searched method has.

    Attributes:
        arch: ``supernet`` | ``largest`` | ``published`` | a mapping ``{slot: [choice per position]}`` |
            the path of a YAML file with that mapping (under the key ``arch`` or at its top level).
        inherit: path of a supernet run's ``task.safetensors`` to initialise the subnet from, or null.
        task: dataset name for ``arch: published`` (filled from ``dataset.name`` by the harness).
        suite: the task's suite (filled from ``dataset.suite``): published architectures belong to one suite, and
            the embedded proxies share names with VTAB-1k tasks.
    """

    arch: Any = "largest"
    inherit: str | None = None
    task: str | None = None
    suite: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.arch, str) and self.arch not in ARCH_MODES:
            path = Path(self.arch)
            if path.suffix not in (".yaml", ".yml"):
                raise ConfigError(
                    f"method.arch={self.arch!r} is neither one of {', '.join(ARCH_MODES)} nor a .yaml file; "
                    "pass a mode, a YAML file written by peftbench-search, or an inline mapping"
                )
            self.arch = load_arch_file(path)
        elif not isinstance(self.arch, (str, Mapping)):
            raise ConfigError(f"method.arch must be a mode, a YAML path or a mapping, got {self.arch!r}")
        if isinstance(self.arch, Mapping):
            self.arch = {str(k): list(v) for k, v in self.arch.items()}
        if self.inherit is not None and not Path(self.inherit).is_file():
            raise ConfigError(f"method.inherit={self.inherit!r}: no such file (a supernet run's task.safetensors)")


def load_arch_file(path: Path) -> Arch:
    """Read an architecture mapping from a YAML file (top level, or under ``arch``)."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"method.arch file {path} does not exist; peftbench-search writes it as arch.yaml")
    data = yaml.safe_load(path.read_text())
    if isinstance(data, Mapping) and isinstance(data.get("arch"), Mapping):
        data = data["arch"]
    if not isinstance(data, Mapping):
        raise ConfigError(f"method.arch file {path} holds no mapping {{slot: [choice per position]}}")
    return {str(k): list(v) for k, v in data.items()}


class SearchedMethod(PeftMethod[C]):
    """Base of NOAH and GLoRA. Subclasses define the slots, their choices and the elastic modules.

    Subclass hooks: :meth:`positions` (positions per slot on a model), :meth:`choices` (allowed values of a
    slot), :meth:`inject` (put the modules in, allocating ``alloc``), :meth:`sample`, :meth:`mutate`,
    :meth:`crossover`; optionally :meth:`published_arch` and :meth:`budget_params`.
    """

    family = "unified"
    subfamily = "searched"
    slots: ClassVar[tuple[str, ...]] = ()
    _drawn = False  # a supernet's training forward drew an architecture since the last activate()

    # -- subclass hooks ---------------------------------------------------------------------------
    def positions(self, model: nn.Module) -> int:
        """Positions of every slot on ``model`` (e.g. its number of blocks)."""
        raise NotImplementedError

    def choices(self, slot: str) -> tuple[Any, ...]:
        """The values a position of ``slot`` may take, the empty choice included."""
        raise NotImplementedError

    def inject(self, model: nn.Module, alloc: Arch) -> None:
        """Wrap the backbone's modules with elastic modules sized for ``alloc``."""
        raise NotImplementedError

    def sample(self, n: int, rng: random.Random) -> Arch:
        """One architecture drawn as the paper's supernet training draws them."""
        raise NotImplementedError

    def mutate(self, arch: Arch, rng: random.Random, m_prob: float, s_prob: float) -> Arch:
        """The paper's mutation of ``arch``."""
        raise NotImplementedError

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """The paper's crossover of two parents."""
        raise NotImplementedError

    def published_arch(self, task: str | None, suite: str | None, n: int) -> Arch:
        raise ConfigError(f"method {self.name!r} has no published architectures; set method.arch")

    def largest(self, n: int) -> Arch:
        """Every position at the slot's largest choice (the last of :meth:`choices`)."""
        return {s: [self.choices(s)[-1]] * n for s in self.slots}

    # -- the harness entry points -----------------------------------------------------------------
    def apply(self, model: nn.Module) -> nn.Module:
        self.check_backbone(model)
        cfg: SearchedConfig = self.config
        n = self.positions(model)
        supernet = cfg.arch == "supernet"
        arch = self.resolve_arch(model)
        self.inject(model, arch)
        self.activate(model, arch)
        if supernet:
            model.register_forward_pre_hook(self._sample_hook(n))
        if cfg.inherit is not None:
            inherit_prefix_slices(model, cfg.inherit)
        return model

    def resolve_arch(self, model: nn.Module) -> Arch:
        """The architecture ``method.arch`` names on ``model``, checked against the search space."""
        cfg: SearchedConfig = self.config
        n = self.positions(model)
        if cfg.arch in ("supernet", "largest"):
            return self.largest(n)
        arch = self.published_arch(cfg.task, cfg.suite, n) if cfg.arch == "published" else cfg.arch
        self.check_arch(arch, n)
        return arch

    def check_arch(self, arch: Any, n: int) -> None:
        """Raise a :class:`ConfigError` naming what is wrong with ``arch`` for ``n`` positions."""
        if not isinstance(arch, Mapping) or sorted(arch) != sorted(self.slots):
            got = sorted(arch) if isinstance(arch, Mapping) else arch
            raise ConfigError(f"method {self.name!r} arch needs exactly the slots {list(self.slots)}, got {got}")
        for slot in self.slots:
            values = list(arch[slot])
            if len(values) != n:
                raise ConfigError(
                    f"method {self.name!r} arch.{slot} has {len(values)} entries; this backbone has {n} positions"
                )
            bad = [v for v in values if v not in self.choices(slot)]
            if bad:
                raise ConfigError(
                    f"method {self.name!r} arch.{slot} has value(s) {bad} outside the search space; "
                    f"valid: {list(self.choices(slot))}"
                )

    def elastic_modules(self, model: nn.Module) -> dict[str, list[ElasticModule]]:
        """The elastic modules of each slot, in position (module) order."""
        found: dict[str, list[ElasticModule]] = {s: [] for s in self.slots}
        for m in model.modules():
            if isinstance(m, ElasticModule):
                for slot in m.slots:
                    found[slot].append(m)
        return found

    def _choices_per_module(self, model: nn.Module, arch: Arch) -> list[tuple[ElasticModule, dict[str, Any]]]:
        per: dict[int, tuple[ElasticModule, dict[str, Any]]] = {}
        for slot, modules in self.elastic_modules(model).items():
            for module, value in zip(modules, arch[slot], strict=True):
                per.setdefault(id(module), (module, {}))[1][slot] = value
        return list(per.values())

    def activate(self, model: nn.Module, arch: Arch) -> None:
        """Make ``arch`` the active architecture (in a supernet, any architecture of the space).

        It stays active in eval mode; a supernet's training forward passes draw new ones (after which the
        next eval forward pass runs the largest architecture again, until ``activate`` is called).
        """
        self._drawn = False
        self._set_active(model, arch)

    def _set_active(self, model: nn.Module, arch: Arch) -> None:
        for module, choice in self._choices_per_module(model, arch):
            module.choice = choice
        self.after_activate(model, arch)

    def after_activate(self, model: nn.Module, arch: Arch) -> None:
        """Hook for couplings between positions (NOAH's prompts read the previous block's length)."""

    def arch_params(self, model: nn.Module, arch: Arch) -> int:
        """Trainable parameters (without head) of ``arch`` as a fixed subnet, from the modules' shapes."""
        return sum(module.param_count(choice) for module, choice in self._choices_per_module(model, arch))

    def budget_params(self, model: nn.Module, arch: Arch) -> int:
        """The count the paper's search compares with its parameter limit (default: the trainable count)."""
        return self.arch_params(model, arch)

    def _sample_hook(self, n: int):
        largest = self.largest(n)

        def hook(module: nn.Module, args: Any) -> None:
            if module.training:  # one architecture per training forward (= per optimizer step)
                self._set_active(module, self.sample(n, random))  # Python's RNG: seeded and checkpointed
                self._drawn = True
            elif self._drawn:  # evaluating a trained supernet: its largest architecture
                self._set_active(module, largest)
                self._drawn = False

        return hook


def inherit_prefix_slices(model: nn.Module, path: str | Path) -> int:
    """Copy a supernet's trained tensors into a subnet: the leading slice of each same-named tensor.

    Every elastic tensor of the subnet is a prefix slice of the supernet's (first ranks, first prompt tokens,
    first bottleneck channels), so inheritance is by name and shape. The head is copied too.

    Returns:
        The number of tensors copied.
    """
    from safetensors.torch import load_file

    state = load_file(str(path))
    owned = {id(p) for p in method_owned_parameters(model)} | {id(p) for p in head_parameters(model)}
    copied = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            if id(param) not in owned:
                continue
            if name not in state:
                raise CheckpointError(f"method.inherit={path}: no tensor {name!r}; is it a supernet of this method?")
            src = state[name]
            if src.dim() != param.dim() or any(s < d for s, d in zip(src.shape, param.shape, strict=True)):
                raise CheckpointError(
                    f"method.inherit={path}: {name} has shape {tuple(src.shape)}, cannot slice {tuple(param.shape)}"
                )
            param.copy_(src[tuple(slice(0, d) for d in param.shape)])
            copied += 1
    return copied
