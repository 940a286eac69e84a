"""The contract every PEFT method implements, and the registry that names them.

A method is a small class with a typed config (a dataclass) and an :meth:`PeftMethod.apply` entry point
that takes a timm backbone and returns it with the method's modules injected. Which parameters train is
decided here, structurally, in one place:

* every parameter that lives in a :class:`PeftModule` (outside a wrapped ``base_layer``) is the
  method's own and trains;
* specification methods (BitFit, LN-tune, partial-k, full fine-tuning) select existing backbone
  parameters by module type or position, by overriding :meth:`PeftMethod.trainable_parameters`;
* the classification head is the harness's policy (:func:`head_parameters`), not each method's.
"""

from __future__ import annotations

import dataclasses
from abc import ABC
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from peftbench.config import build_config
from peftbench.errors import ConfigError, MethodNotSupportedError, UnknownNameError

FAMILIES = ("baseline", "addition", "partial", "unified")


class PeftModule(nn.Module):
    """Marker base class for modules a method adds.

    Parameters registered in a ``PeftModule`` (and its children) are trainable, except those below a
    child named ``base_layer``: wrappers keep the frozen original there.
    """


@dataclasses.dataclass
class MethodConfig:
    """Base class for method configs; subclasses add typed fields with the paper's defaults."""


class PeftMethod(ABC):
    """One PEFT method. Subclasses set the class attributes and override :meth:`apply`.

    Attributes:
        name: registry name, equal to the YAML file name in ``configs/method/``.
        family: one of :data:`FAMILIES` (the survey's taxonomy, plus ``baseline``).
        subfamily: finer group in the survey (``adapter``, ``prompt``, ``specification``, ...).
        config_cls: the typed config dataclass.
        mergeable: whether :meth:`merge` folds the method back into a plain backbone.
        backbones: backbone families the method is defined for (``vit``, ``swin``); empty = any.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    subfamily: ClassVar[str] = ""
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    mergeable: ClassVar[bool] = False
    backbones: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: MethodConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    # -- entry points ---------------------------------------------------------------------------
    def apply(self, model: nn.Module) -> nn.Module:
        """Inject the method's modules into ``model`` (in place) and return it.

        The default adds nothing (specification methods only choose what trains).
        """
        return model

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        """Yield the parameters the method trains, the head excluded (the harness adds it)."""
        yield from method_owned_parameters(model)

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the method into a plain backbone with identical outputs (reparameter methods)."""
        raise MethodNotSupportedError(
            f"method {self.name!r} cannot be merged into the backbone: it is not a reparameterisation. "
            "Set trainer.merge=false for it."
        )

    # -- helpers for subclasses -----------------------------------------------------------------
    def check_backbone(self, model: nn.Module) -> str:
        """Return the backbone family; raise if this method is not defined for it."""
        fam = backbone_family(model)
        if self.backbones and fam not in self.backbones:
            raise MethodNotSupportedError(
                f"method {self.name!r} is defined for {'/'.join(self.backbones)} backbones, "
                f"not for {type(model).__name__} ({fam}). Choose a backbone of that family, "
                "e.g. backbone=vit_b16_in21k."
            )
        return fam


def backbone_family(model: nn.Module) -> str:
    """Classify a timm model as ``vit``, ``swin`` or ``other`` by its class."""
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, SwinTransformer):
        return "swin"
    return "other"


def method_owned_parameters(
    model: nn.Module, owners: tuple[type[nn.Module], ...] = (PeftModule,)
) -> Iterator[nn.Parameter]:
    """Parameters inside instances of ``owners`` (default :class:`PeftModule`), skipping ``base_layer`` children.

    Args:
        model: the model with the method's modules injected.
        owners: module classes whose parameters belong to the method (e.g. PEFT's tuner layer class).

    Returns:
        An iterator over distinct parameters, in module order.
    """
    seen: set[int] = set()

    def walk(module: nn.Module, owned: bool) -> Iterator[nn.Parameter]:
        owned = owned or isinstance(module, owners)
        if owned:
            for p in module.parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    yield p
        for child_name, child in module.named_children():
            # A wrapped original is frozen; it may itself contain method modules deeper down.
            yield from walk(child, owned and child_name != "base_layer")

    yield from walk(model, False)


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The task classifier's parameters (timm's ``get_classifier()``)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return list(head.parameters()) if isinstance(head, nn.Module) else []


# -- registry -------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[PeftMethod]] = {}


def register_method(cls: type[PeftMethod]) -> type[PeftMethod]:
    """Class decorator: add a method to the registry under ``cls.name``."""
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.__name__}.family must be one of {FAMILIES}, got {cls.family!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    """Sorted names of all registered methods."""
    _import_all()
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type[PeftMethod]:
    """Look a method up by name; unknown names raise with the valid ones."""
    _import_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("method", name, _REGISTRY, "Pick one with method=<name>.") from None


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


def with_dataset_context(name: str, options: Mapping[str, Any], task: str | None, suite: str | None) -> dict[str, Any]:
    """``options`` with ``task`` / ``suite`` filled where method ``name``'s config has them and they are unset.

    Methods with per-task settings (VPT's ``length: auto``, NOAH's published subnets) learn the dataset from the
    harness this way; every entry point (train, params, bench, search, compose components) calls this.
    """
    fields = {f.name for f in dataclasses.fields(get_method_class(name).config_cls)}
    out = dict(options)
    for key, value in (("task", task), ("suite", suite)):
        if key in fields and out.get(key) is None and value is not None:
            out[key] = value
    return out


def build_method(name: str, options: Mapping[str, Any] | None = None) -> PeftMethod:
    """Instantiate a registered method from its name and its config options."""
    cls = get_method_class(name)
    return cls(build_config(cls.config_cls, options or {}, f"method {name!r}"))


def import_submodules(package: str, path: list[str]) -> None:
    """Import every module below a package (used by the family packages to register methods)."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(path, prefix=package + "."):
        importlib.import_module(info.name)


def _import_all() -> None:
    # Importing the families registers their methods (each module uses @register_method).
    import peftbench.methods.addition  # noqa: F401
    import peftbench.methods.baselines  # noqa: F401
    import peftbench.methods.partial  # noqa: F401
    import peftbench.methods.unified  # noqa: F401


def count(params: Iterator[nn.Parameter] | list[nn.Parameter]) -> int:
    """Number of scalar entries in distinct parameters."""
    seen: dict[int, torch.Tensor] = {id(p): p for p in params}
    return sum(p.numel() for p in seen.values())
