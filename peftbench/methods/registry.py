"""The registry: an explicit list of every method class (as timm and Hugging Face PEFT list theirs), the one
builder of a method from its name, options and dataset, and the ``method:`` config block's parser.

Adding a method: one module in its family folder, one line in :data:`METHODS`, one YAML in ``configs/method/``
(a test checks the YAML files and this list agree).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from peftbench.config import build_config
from peftbench.errors import ConfigError, PeftbenchError, UnknownNameError
from peftbench.methods.addition.adapter.adapter import Adapter, HoulsbyAdapter
from peftbench.methods.addition.adapter.adapter_plus import AdapterPlus
from peftbench.methods.addition.adapter.adaptformer import AdaptFormer
from peftbench.methods.addition.adapter.aim import AIM
from peftbench.methods.addition.adapter.convpass import Convpass
from peftbench.methods.addition.adapter.mona import Mona
from peftbench.methods.addition.adapter.parallel_adapter import ParallelAdapterMethod
from peftbench.methods.addition.adapter.sct import SCT
from peftbench.methods.addition.prefix.prefix import PrefixTuning
from peftbench.methods.addition.prompt.vpt import VPTDeep, VPTShallow
from peftbench.methods.addition.side.dtl import DTL
from peftbench.methods.addition.side.hst import HST
from peftbench.methods.addition.side.lst import LadderSideTuning
from peftbench.methods.base import TAXONOMY, PeftMethod
from peftbench.methods.baselines import FullFinetune, LinearProbe
from peftbench.methods.partial.hf_peft.tuners import (
    HFBOFT,
    HFIA3,
    HFOFT,
    HFDoRA,
    HFFourierFT,
    HFLoHa,
    HFLoKr,
    HFLoRA,
    HFVeRA,
)
from peftbench.methods.partial.reparam.fact import FacTTK, FacTTT
from peftbench.methods.partial.reparam.hydra import Hydra
from peftbench.methods.partial.reparam.kadaptation import KAdaptation
from peftbench.methods.partial.reparam.lora import LoRA, LoRAQV
from peftbench.methods.partial.reparam.repadapter import RepAdapter
from peftbench.methods.partial.reparam.ssf import SSF
from peftbench.methods.partial.specification.attn_tune import AttnTune
from peftbench.methods.partial.specification.bitfit import BitFit
from peftbench.methods.partial.specification.difffit import DiffFit
from peftbench.methods.partial.specification.gps import GPS
from peftbench.methods.partial.specification.ln_tune import LNTune
from peftbench.methods.partial.specification.partial_k import PartialK
from peftbench.methods.unified.compose import COMPONENT_FAMILIES, Compose, ComposedMethod
from peftbench.methods.unified.search.glora import GLoRA
from peftbench.methods.unified.search.noah import NOAH
from peftbench.methods.unified.u_tuning import UTuning
from peftbench.methods.unified.vpetl import VPETLUnified

METHODS: tuple[type[PeftMethod], ...] = (
    # baselines
    FullFinetune, LinearProbe,
    # addition: adapters, prompts, prefixes, side networks
    Adapter, HoulsbyAdapter, AdaptFormer, AIM, Convpass, ParallelAdapterMethod,
    VPTShallow, VPTDeep, PrefixTuning, LadderSideTuning, DTL, HST,
    AdapterPlus, Mona,
    # partial: specification tuning
    BitFit, LNTune, AttnTune, DiffFit, PartialK,
    # partial: reparameter tuning (peftbench's own and Hugging Face PEFT's tuners)
    LoRA, LoRAQV, FacTTT, FacTTK, KAdaptation, SSF, RepAdapter,
    Hydra,
    HFLoRA, HFDoRA, HFLoHa, HFLoKr, HFOFT, HFBOFT, HFVeRA, HFFourierFT, HFIA3,
    # unified: compositions and searched methods
    Compose, VPETLUnified, UTuning, NOAH, GLoRA,
    # selected on the training data before training (addition: SCT; partial: GPS)
    SCT, GPS,
)


def _check(methods: tuple[type[PeftMethod], ...]) -> dict[str, type[PeftMethod]]:
    table: dict[str, type[PeftMethod]] = {}
    for cls in methods:
        if cls.family not in TAXONOMY or cls.subfamily not in TAXONOMY[cls.family]:
            raise ValueError(f"{cls.__name__}: family/subfamily {cls.family}/{cls.subfamily} is not in the taxonomy "
                             f"{TAXONOMY}")
        if cls.name in table:
            raise ValueError(f"method name {cls.name!r} listed twice ({table[cls.name].__name__}, {cls.__name__})")
        table[cls.name] = cls
    return table


REGISTRY: dict[str, type[PeftMethod]] = _check(METHODS)


def available_methods() -> list[str]:
    """Sorted names of all registered methods."""
    return sorted(REGISTRY)


def get_method_class(name: str) -> type[PeftMethod]:
    """Look a method up by name; unknown names raise with the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownNameError("method", name, REGISTRY, "Pick one with method=<name>.") from None


# -- the method: config block -------------------------------------------------------------------------------
LABEL_KEY = "label"
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def split_method_block(block: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """``(registered name, label, options)`` of a ``method:`` config block.

    ``name`` picks the registered method; the optional ``label`` is what results, run folders and leaderboards
    call it (default: the name). A preset YAML that configures a method differently (``mam_adapter.yaml`` is
    ``compose`` with prefix + parallel adapter) sets ``label`` so its rows never share a name with the
    method's default. The label is not a method option.
    """
    options = dict(block)
    if "name" not in options:
        raise ConfigError("the method block has no 'name'; pick a method with method=<name>")
    name = options.pop("name")
    label = options.pop(LABEL_KEY, None)
    if label is None:
        label = name
    if not isinstance(label, str) or not label or not set(label) <= _LABEL_CHARS or label.startswith("."):
        raise ConfigError(
            f"method.label={label!r} is not a usable label: it names result folders, so use letters, digits, "
            "'_', '-' or '.' (not first), e.g. ++method.label=lora_r4"
        )
    return name, label, options


# -- building -----------------------------------------------------------------------------------------------
def _with_dataset(cls: type[PeftMethod], options: Mapping[str, Any], task: str | None,
                  suite: str | None) -> dict[str, Any]:
    """``options`` with ``task`` / ``suite`` filled where the method's config has them and they are unset."""
    fields = {f.name for f in dataclasses.fields(cls.config_cls)}
    out = dict(options)
    for key, value in (("task", task), ("suite", suite)):
        if key in fields and out.get(key) is None and value is not None:
            out[key] = value
    return out


def component_choices() -> list[str]:
    """Registered method names that may be a component of a composition (the addition and partial families, except
    methods that select on the training data: a composition does not run their selection)."""
    return [n for n in available_methods() if REGISTRY[n].family in COMPONENT_FAMILIES and not REGISTRY[n].looks_at_data]


def _component(owner: str, i: int, name: str, options: dict[str, Any]) -> PeftMethod:
    choices = component_choices()
    if name not in choices:
        if name in REGISTRY:
            cls = REGISTRY[name]
            why = ("composed methods do not nest: list their components instead" if issubclass(cls, ComposedMethod)
                   else "it selects on the training data, which compositions do not run" if cls.looks_at_data
                   else f"it is a {cls.family} method, not an addition or partial one")
            raise ConfigError(f"{owner} component #{i} cannot be {name!r}: {why}. Valid components: {', '.join(choices)}")
        raise UnknownNameError(f"{owner} component method", name, choices, f"Fix method.components[{i}].method")
    try:
        return build_method(name, copy.deepcopy(options))
    except PeftbenchError as exc:
        raise ConfigError(f"{owner} component #{i} ({name}): {exc}. Set it under method.components[{i}].options") from None


def build_method(name: str, options: Mapping[str, Any] | None = None, task: str | None = None,
                 suite: str | None = None) -> PeftMethod:
    """Instantiate a registered method from its name, its options and the dataset it will train on.

    Args:
        name: the registered name.
        options: config options (defaults for what is left out; unknown keys are refused).
        task, suite: the dataset, for methods whose config has these fields (NOAH's published subnets); filled
            into the options the method's config has and the user left unset.

    Returns:
        The method; a composition comes with its components built the same way.
    """
    cls = get_method_class(name)
    config = build_config(cls.config_cls, _with_dataset(cls, options or {}, task, suite), f"method {name!r}")
    if issubclass(cls, ComposedMethod):
        components = [_component(name, i, n, o) for i, (n, o) in enumerate(config.component_specs())]
        return cls(config, components)
    return cls(config)
