"""The contract every PEFT method implements, and the registry that names them.

A method is a small class with a typed config (a dataclass) and an :meth:`PeftMethod.apply` entry point
that takes a timm backbone and returns it with the method's modules injected. Which parameters train is
decided here, structurally, in one place:

* every parameter that lives in a :class:`PeftModule` (outside a wrapped ``base_layer``) is the
  method's own and trains;
* specification methods (BitFit, LN-tune, partial-k, full fine-tuning) select existing backbone
  parameters by module type or position, by overriding :meth:`PeftMethod.trainable_parameters`;
* the classification head is the harness's policy (:func:`head_parameters`), not each method's.

A method whose modules depend on the task's data (SCT's salient channels, GPS's selected connections) sets
``looks_at_data`` and implements :meth:`PeftMethod.prepare`: the run spine calls it once, after the model is
built and before the optimizer is made, with the run's training split only (:class:`TrainingData`). Its
modules keep the selection in index buffers (:class:`peftbench.methods.layers.selection.SelectionModule`),
so the selection has a fixed shape known before any data is read: counts and step costs without data
(``peftbench-params``, ``peftbench-bench``) are those of any selection.
"""

from __future__ import annotations

import dataclasses
from abc import ABC
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from torch import nn
from torch.utils.data import Dataset

from peftbench.errors import MethodNotSupportedError
from peftbench.methods.layers.blocks import FAMILY_EXAMPLES, backbone_family

# The survey's taxonomy (Xin et al., 2024), plus the baselines: family -> its subfamilies. A method states
# both as metadata; the registry checks them against this table and a test checks the folder agrees.
TAXONOMY: dict[str, tuple[str, ...]] = {
    "baseline": ("full", "linear"),
    "addition": ("adapter", "prompt", "prefix", "side"),
    "partial": ("specification", "reparameter", "hf_peft"),
    "unified": ("composed", "searched"),
}
FAMILIES = tuple(TAXONOMY)


class PeftModule(nn.Module):
    """Marker base class for modules a method adds.

    Parameters registered in a ``PeftModule`` (and its children) are trainable, except those below a
    child named ``base_layer``: wrappers keep the frozen original there.
    """


@dataclasses.dataclass
class MethodConfig:
    """Base class for method configs; subclasses add typed fields with the paper's defaults."""


C = TypeVar("C", bound=MethodConfig)


@dataclasses.dataclass
class TrainingData:
    """What a method may read before training: the run's training split and nothing else.

    Attributes:
        split: the split's name (``train800val200``, ``train800``, ``train+val``, ...).
        plain: the training images with the evaluation preprocessing (no augmentation); items ``(image, label)``.
        with_transform: the training images through another transform of PIL images (a method's own
            augmentations, e.g. GPS's two contrastive views); items ``(transform(image), label)``.
        num_classes: classes of the task.
        normalization: the run's ``mean``, ``std``, ``interpolation`` and ``image_size``.
        device: where the run computes.
        dtype: the run's autocast dtype (None: fp32).
        batch_size: the run's training batch size.
        num_workers: data-loader workers.
        seed: the run's seed (None: the generators as they are).
    """

    split: str
    plain: Dataset
    with_transform: Callable[[Callable[[Any], Any]], Dataset]
    num_classes: int
    normalization: dict[str, Any]
    device: torch.device
    dtype: torch.dtype | None
    batch_size: int
    num_workers: int = 0
    seed: int | None = None


class PeftMethod(ABC, Generic[C]):
    """One PEFT method, generic in its config type: ``class LoRA(PeftMethod[LoRAConfig])``.

    Subclasses set the class attributes and override :meth:`apply`.

    Attributes:
        name: registry name, equal to the YAML file name in ``configs/method/``.
        family: one of :data:`FAMILIES` (the survey's taxonomy, plus ``baseline``).
        subfamily: finer group in the survey (``adapter``, ``prompt``, ``specification``, ...).
        config_cls: the typed config dataclass.
        mergeable: whether :meth:`merge` folds the method back into a plain backbone.
        backbones: backbone families the method is defined for (``vit``, ``eva``, ``swin``, ``convnext``; see
            :mod:`peftbench.methods.layers.blocks`); empty = any.
        refusals: family -> why the method is not defined there (shown when it is refused; families not in
            ``backbones`` and not listed here get a generic reason).
        notes: backbone feature (:data:`~peftbench.methods.layers.blocks.FEATURES`) -> how the method's placement
            is translated there, where that is a choice; the support matrix prints them per backbone.
        looks_at_data: the method selects on the training data (:meth:`prepare`) before training.
        criterion: what the selection ranks by, in words (recorded with the run).
    """

    name: ClassVar[str]
    family: ClassVar[str]
    subfamily: ClassVar[str] = ""
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    mergeable: ClassVar[bool] = False
    backbones: ClassVar[tuple[str, ...]] = ()
    refusals: ClassVar[dict[str, str]] = {}
    notes: ClassVar[dict[str, str]] = {}
    looks_at_data: ClassVar[bool] = False
    criterion: ClassVar[str] = ""

    def __init__(self, config: C | None = None) -> None:
        self.config: C = config if config is not None else cast(C, self.config_cls())

    # -- entry points ---------------------------------------------------------------------------
    def apply(self, model: nn.Module) -> nn.Module:
        """Inject the method's modules into ``model`` (in place) and return it.

        The default adds nothing (specification methods only choose what trains).
        """
        return model

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        """Yield the parameters the method trains, the head excluded (the harness adds it)."""
        yield from method_owned_parameters(model)

    def prepare(self, model: nn.Module, data: TrainingData) -> dict[str, Any]:
        """Select on the training data (methods with ``looks_at_data``), in place; nothing is trained.

        Called once per run by the run spine, after :meth:`apply` and before the optimizer is made; a resumed
        run reads its selection back instead (:func:`peftbench.methods.layers.selection.load_selection`).

        Returns:
            A JSON-able summary of what was selected, recorded in the run's ``selection`` block.
        """
        raise NotImplementedError(f"method {self.name!r} does not select on the training data")

    def merge(self, model: nn.Module) -> nn.Module:
        """Fold the method into a plain backbone with identical outputs (reparameter methods)."""
        raise MethodNotSupportedError(
            f"method {self.name!r} cannot be merged into the backbone: it is not a reparameterisation. "
            "Set trainer.merge=false for it."
        )

    def peft_adapter(self, model: nn.Module, plain: nn.Module) -> tuple[Any, dict[str, torch.Tensor]]:
        """The trained method as a Hugging Face PEFT adapter of the same function (``peftbench-export``).

        Args:
            model: the backbone with this method applied and trained.
            plain: the same backbone without the method (module names to target).

        Returns:
            PEFT's config for ``plain`` (the head is added by the caller as ``modules_to_save``) and the
            adapter tensors named as in the PEFT-wrapped ``plain`` (``blocks.0.attn.qkv.lora_A.default.weight``)
            wherever PEFT names or shapes them differently from ``model``; the rest is taken from ``model``
            by name.
        """
        raise MethodNotSupportedError(
            f"method {self.name!r} has no Hugging Face PEFT adapter of the same function; the peft format "
            "covers the LoRA family (lora, lora_qv and the hf_* methods). Use --format timm for a mergeable run."
        )

    # -- helpers for subclasses -----------------------------------------------------------------
    def check_backbone(self, model: nn.Module) -> str:
        """Return the backbone family; raise, with the reason, if this method is not defined for it."""
        fam = backbone_family(model)
        if self.backbones and fam not in self.backbones:
            raise MethodNotSupportedError(
                f"method {self.name!r} is not defined for {type(model).__name__} ({fam}): "
                f"{self.refusal_reason(fam)}. It is defined for {'/'.join(self.backbones)} backbones, "
                f"e.g. backbone={FAMILY_EXAMPLES[self.backbones[0]]}"
            )
        return fam

    def refusal_reason(self, family: str) -> str:
        """Why the method is not defined for ``family`` (its :attr:`refusals` entry, or a generic reason)."""
        generic = f"its placement is only specified for {'/'.join(self.backbones)} blocks"
        return self.refusals.get(family, generic)


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


def method_owned_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Persistent buffers inside :class:`PeftModule`s (outside a wrapped ``base_layer``), by qualified name.

    These are state a method learns without gradients, e.g. the running statistics of a BatchNorm in HST's side
    network; they belong in a task checkpoint with the trained parameters.
    """
    out: dict[str, torch.Tensor] = {}

    def walk(module: nn.Module, prefix: str, owned: bool) -> None:
        owned = owned or isinstance(module, PeftModule)
        if owned:
            skip = getattr(module, "_non_persistent_buffers_set", set())
            for name, buf in module.named_buffers(recurse=False):
                if buf is not None and name not in skip:
                    out.setdefault(prefix + name, buf)
        for child_name, child in module.named_children():
            walk(child, f"{prefix}{child_name}.", owned and child_name != "base_layer")

    walk(model, "", False)
    return out


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The task classifier's parameters (timm's ``get_classifier()``)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return list(head.parameters()) if isinstance(head, nn.Module) else []


def head_name(model: nn.Module) -> str:
    """The qualified name of the task classifier (timm's ``get_classifier()``: ``head``, ``head.fc``)."""
    head = model.get_classifier()
    for name, module in model.named_modules():
        if module is head:
            return name
    raise MethodNotSupportedError(f"{type(model).__name__} has no classifier module (get_classifier())")


def count(params: Iterator[nn.Parameter] | list[nn.Parameter]) -> int:
    """Number of scalar entries in distinct parameters."""
    seen: dict[int, torch.Tensor] = {id(p): p for p in params}
    return sum(p.numel() for p in seen.values())
